"""Everything the bot says, by language; English is the fallback."""

STRINGS = {
    "en": {
        "greeting": (
            "Hello, {name}! This is the support desk.\n\n"
            "Write your question here, send a photo or a file, and we will answer "
            "in this chat. /help lists what else I can do."
        ),
        "greeting_app": "You can also open your requests in the app below.",
        "button_new_request": "New request",
        "button_my_requests": "My requests",
        "button_open_request": "Open request",
        "ticket_opened_in_app": (
            "Thank you! Your request #{number} is open: {subject}\n\n"
            "We will answer here and in the app."
        ),
        "help": (
            "Just write to us: every message goes to your current request, or "
            "opens a new one.\n\n"
            "/new - open a new request\n"
            "/status - your open requests\n"
            "/close - close your current request\n"
            "/help - this message"
        ),
        "unknown_command": "I don't know that command.",
        "ticket_opened": (
            "Thank you! Your request #{number} is open. We will answer here as soon "
            "as we can."
        ),
        "ticket_opened_empty": (
            "Request #{number} is open. Tell us what happened: your next messages "
            "go to it."
        ),
        "status_header": "Your open requests:",
        "status_line": "#{number} · {status} · {subject}",
        "no_open_tickets": "You have no open requests. Write to us to open one.",
        "ticket_closed": (
            "Request #{number} is closed. Write again any time to open a new one."
        ),
        "ticket_closed_by_staff": (
            "Your request #{number} is closed. Write again any time to open a new one."
        ),
        "rating_prompt": "How did we do? Rate our help from 1 to 5:",
        "rating_thanks": "Thank you for your rating!",
        "rating_unavailable": "This rating is no longer available.",
        "nothing_to_close": "You have no open request to close.",
        "unsupported": (
            "Sorry, I can't take this kind of message. Please send text, a photo, a "
            "file, a voice message, a video, a location or a contact."
        ),
        "private_only": (
            "I answer support requests in private chats only. Open a chat with me "
            "to write to the support team."
        ),
        "status_open": "open",
        "status_pending": "waiting for you",
        "no_subject": "(no subject)",
        "command_new": "Open a new request",
        "command_status": "Your open requests",
        "command_close": "Close your current request",
        "command_help": "What the bot can do",
    },
}

DEFAULT_LANGUAGE = "en"


def language_of(language_code: str | None) -> str:
    """Pick the supported language closest to a Telegram ``language_code``."""
    if not language_code:
        return DEFAULT_LANGUAGE

    code = language_code.lower()
    for candidate in (code, code.split("-")[0]):
        if candidate in STRINGS:
            return candidate
    return DEFAULT_LANGUAGE


def text(key: str, language_code: str | None = None, **values) -> str:
    """Return the string ``key`` in the user's language, filled with ``values``."""
    strings = STRINGS[language_of(language_code)]
    template = strings.get(key) or STRINGS[DEFAULT_LANGUAGE][key]
    return template.format(**values)
