"""Flask's JSON through the store's fast serialiser, so responses and audit records are written alike."""

from flask.json.provider import DefaultJSONProvider

from service.store import json_text


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON (jsonify, sessions, templates) through `json_text.dumps` when it asks for
    compact text, which is every response outside debug mode; anything else (indentation) as Flask does."""

    def dumps(self, obj, **kwargs) -> str:
        if kwargs != {"separators": (",", ":")}:
            return super().dumps(obj, **kwargs)
        return json_text.dumps(obj, sort_keys=self.sort_keys, default=self.default)
