"""The lecture's interactive demos: kNN regions and a linear classifier in 2-D."""

from fastapi import APIRouter

router = APIRouter()
