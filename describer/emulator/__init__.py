"""Local stand-ins for Google's Gemini API and for image hosts, used by tests and benchmarks.

``GeminiEmulator`` speaks the Gemini REST API over real HTTP (point google-genai at its
``base_url``); ``ImageServer`` serves image files and scripted misbehaving routes.
"""

from .behaviour import EmulatorSettings
from .images import ImageServer
from .server import GeminiEmulator

__all__ = ["EmulatorSettings", "GeminiEmulator", "ImageServer"]
