"""The HTML pages of the server: try a model, and the lecture's demos."""

from fastapi import APIRouter

router = APIRouter()
