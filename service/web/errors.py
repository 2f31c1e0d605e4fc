"""The one JSON shape of every error the service returns."""
from flask import jsonify


def error_response(status: int, code: str, message: str, field: str | None = None, **extra):
    """`{"error": {"code", "message", "field", ...}}` with the status, as a Flask view return value."""
    return jsonify({"error": {"code": code, "message": message, "field": field, **extra}}), status
