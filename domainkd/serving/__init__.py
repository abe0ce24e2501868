"""Serving and shipping the trained student: an OpenAI-compatible server and a merged safetensors export."""

from domainkd.serving.export import export_model
from domainkd.serving.launch import app_for_run, serve
from domainkd.serving.server import ServerSettings, create_app

__all__ = ["ServerSettings", "app_for_run", "create_app", "export_model", "serve"]
