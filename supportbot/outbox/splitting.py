"""Cutting texts and captions that Telegram would refuse as too long into parts.

Telegram counts lengths in UTF-16 code units, so an emoji outside the Basic
Multilingual Plane counts twice; every measure here does the same.
"""

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
MEDIA_METHODS = frozenset(
    {
        "sendAnimation",
        "sendAudio",
        "sendDocument",
        "sendPhoto",
        "sendVideo",
        "sendVoice",
    }
)
# Cuts are made at the last of these within the limit, the first kind found.
BOUNDARIES = ("\n\n", "\n", " ")
# Settings of the whole message, repeated on every part.
SHARED_PARAMETERS = (
    "business_connection_id",
    "disable_notification",
    "link_preview_options",
    "message_thread_id",
    "parse_mode",
    "protect_content",
)
# Settings that belong where the message starts or ends.
FIRST_PART_PARAMETERS = ("reply_parameters", "reply_to_message_id")
LAST_PART_PARAMETERS = ("reply_markup",)


def utf16_length(text: str) -> int:
    """Return the length of ``text`` as Telegram counts it."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Cut ``text`` into parts of at most ``limit``, on paragraphs, lines or words."""
    return [text[start:end] for start, end in _pieces(text, 0, limit)]


def split_call(method: str, payload: dict) -> list[tuple[str, dict]]:
    """Return the calls that deliver ``method(payload)``: one, or its parts in order."""
    if method == "sendMessage":
        text = payload.get("text")
        if not isinstance(text, str) or utf16_length(text) <= TEXT_LIMIT:
            return [(method, payload)]

        pieces = _pieces(text, 0, TEXT_LIMIT)
        calls = _text_calls(payload, text, payload.get("entities"), pieces)
        return _framed(payload, [("sendMessage", p) for p in calls])

    if method in MEDIA_METHODS:
        caption = payload.get("caption")
        if not isinstance(caption, str) or utf16_length(caption) <= CAPTION_LIMIT:
            return [(method, payload)]

        cut, resume = _next_piece(caption, 0, CAPTION_LIMIT)
        entities = payload.get("caption_entities")
        media = {
            key: value
            for key, value in payload.items()
            if key not in ("caption", "caption_entities", *LAST_PART_PARAMETERS)
        }
        media["caption"] = caption[:cut]
        if entities:
            media["caption_entities"] = _entities_within(caption, entities, 0, cut)
        rest = _text_calls(
            payload, caption, entities, _pieces(caption, resume, TEXT_LIMIT)
        )
        return _framed(payload, [(method, media)] + [("sendMessage", p) for p in rest])

    return [(method, payload)]


def _text_calls(payload, text, entities, pieces) -> list[dict]:
    calls = []
    for start, end in pieces:
        call = {"chat_id": payload.get("chat_id"), "text": text[start:end]}
        call.update((key, payload[key]) for key in SHARED_PARAMETERS if key in payload)
        if entities:
            call["entities"] = _entities_within(text, entities, start, end)
        calls.append(call)
    return calls


def _framed(payload: dict, calls: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    # Replies quote the first part; buttons sit under the last.
    first, last = calls[0][1], calls[-1][1]
    for key in FIRST_PART_PARAMETERS:
        if key in payload:
            first[key] = payload[key]
    for key in LAST_PART_PARAMETERS:
        if key in payload:
            last[key] = payload[key]
    return calls


def _pieces(text: str, start: int, limit: int) -> list[tuple[int, int]]:
    pieces = []
    while start < len(text):
        cut, resume = _next_piece(text, start, limit)
        pieces.append((start, cut))
        start = resume
    return pieces


def _next_piece(text: str, start: int, limit: int) -> tuple[int, int]:
    """Return where the piece from ``start`` ends and where the next one begins."""
    end = _fit(text, start, limit)
    if end == len(text):
        return end, end

    for boundary in BOUNDARIES:
        at = text.rfind(boundary, start, end)
        cut = at
        while cut > start and text[cut - 1].isspace():
            cut -= 1
        if at > start and cut > start:
            resume = at + len(boundary)
            while resume < len(text) and text[resume].isspace():
                resume += 1
            return cut, resume

    # One word longer than the limit: cut it where the limit falls.
    return end, end


def _fit(text: str, start: int, limit: int) -> int:
    """Return the end of the longest piece from ``start`` within ``limit``."""
    units = 0
    for index in range(start, len(text)):
        units += 2 if ord(text[index]) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)


def _entities_within(text: str, entities: list, start: int, end: int) -> list:
    """Return the entities that overlap text[start:end], moved to its offsets."""
    low = utf16_length(text[:start])
    high = low + utf16_length(text[start:end])
    kept = []
    for entity in entities:
        begin = max(entity["offset"], low)
        finish = min(entity["offset"] + entity["length"], high)
        if begin < finish:
            kept.append({**entity, "offset": begin - low, "length": finish - begin})
    return kept
