"""gunicorn's logger with inbound URL tokens masked in the access log (`/centra/abcd****/events`)."""

from __future__ import annotations

from gunicorn.glogging import Logger

from integration.logmask import mask_paths


class MaskingLogger(Logger):
    """Every access-log atom that can hold the path (request line, path, raw URI) shows the token masked."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key, value in atoms.items():
            if isinstance(value, str) and "/centra/" in value:
                atoms[key] = mask_paths(value)
        return atoms

    def error(self, msg, *args, **kwargs):
        # e.g. "Invalid request from ...: <request line>"
        super().error(mask_paths(str(msg)), *args, **kwargs)
