"""The Mini App in headless Chromium, with a stand-in for Telegram's script.

Telegram's ``telegram-web-app.js`` is never fetched: the browser gets a small
``window.Telegram.WebApp`` of our own at its address, carrying initData signed
by the test signer, and records what the page asks of Telegram's buttons.
"""

import json
import struct
import zlib

import pytest
from sqlalchemy import select

from supportbot import categories, customers, tickets
from supportbot.extensions import db
from supportbot.miniapp.initdata import sign_user
from supportbot.models import Staff, Ticket

from helpers import PASSWORD, needs_chromium, screenshot

TELEGRAM_SCRIPT = "https://telegram.org/js/telegram-web-app.js"
PHONE = {"width": 390, "height": 760}


def png(width: int, height: int, top: tuple, bottom: tuple) -> bytes:
    """Draw a vertical gradient as a PNG, so that screenshots show a real image."""
    rows = b""
    for y in range(height):
        mix = y / max(1, height - 1)
        pixel = bytes(
            round(a + (b - a) * mix) for a, b in zip(top, bottom, strict=True)
        )
        rows += b"\x00" + pixel * width

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PNG = png(240, 150, (255, 196, 120), (236, 96, 110))
LIGHT = {
    "bg_color": "#ffffff",
    "text_color": "#000000",
    "hint_color": "#999999",
    "link_color": "#2481cc",
    "button_color": "#2481cc",
    "button_text_color": "#ffffff",
    "secondary_bg_color": "#efeff3",
    "section_bg_color": "#ffffff",
    "subtitle_text_color": "#6d6d72",
    "accent_text_color": "#2481cc",
    "section_separator_color": "#e7e7e7",
    "destructive_text_color": "#ff3b30",
}
DARK = {
    "bg_color": "#17212b",
    "text_color": "#f5f5f5",
    "hint_color": "#708499",
    "link_color": "#6ab3f3",
    "button_color": "#5288c1",
    "button_text_color": "#ffffff",
    "secondary_bg_color": "#232e3c",
    "section_bg_color": "#17212b",
    "subtitle_text_color": "#708499",
    "accent_text_color": "#6ab2f2",
    "section_separator_color": "#111921",
    "destructive_text_color": "#ec3942",
}

# What the page may call on Telegram.WebApp; calls are kept in sessionStorage
# so that they survive the page moving on to the next one.
STAND_IN = """
(() => {
  const config = %s;
  const log = (entry) => {
    const calls = JSON.parse(sessionStorage.getItem("telegram-calls") || "[]");
    calls.push(entry);
    sessionStorage.setItem("telegram-calls", JSON.stringify(calls));
  };
  const button = (name) => ({
    text: "", isVisible: false, isActive: true, isProgressVisible: false,
    handlers: [],
    setText(text) { this.text = text; return this; },
    show() { this.isVisible = true; log(name + ".show"); return this; },
    hide() { this.isVisible = false; log(name + ".hide"); return this; },
    enable() { this.isActive = true; return this; },
    disable() { this.isActive = false; return this; },
    showProgress() { this.isProgressVisible = true; return this; },
    hideProgress() { this.isProgressVisible = false; return this; },
    onClick(handler) { this.handlers.push(handler); return this; },
    offClick(handler) { this.handlers = this.handlers.filter((h) => h !== handler); },
    press() { this.handlers.forEach((handler) => handler()); },
  });
  const handlers = {};
  window.Telegram = {
    WebApp: {
      initData: config.initData,
      initDataUnsafe: { user: { id: 1, first_name: "Not to be trusted" } },
      version: "8.0",
      platform: "tdesktop",
      colorScheme: config.colorScheme,
      themeParams: config.themeParams,
      viewportHeight: config.height,
      viewportStableHeight: config.height,
      isExpanded: false,
      MainButton: button("MainButton"),
      BackButton: button("BackButton"),
      HapticFeedback: {
        notificationOccurred(kind) { log("haptic." + kind); },
        impactOccurred(style) { log("impact." + style); },
      },
      onEvent(name, handler) { (handlers[name] = handlers[name] || []).push(handler); },
      offEvent(name, handler) {
        handlers[name] = (handlers[name] || []).filter((h) => h !== handler);
      },
      emit(name, detail) {
        (handlers[name] || []).forEach((handler) => handler.call(this, detail));
      },
      ready() { log("ready"); },
      expand() { this.isExpanded = true; },
    },
  };
})();
"""

pytestmark = needs_chromium


@pytest.fixture
def mini_app(browser, live_server):
    """Open Mini App pages as Telegram would, for a user and a theme."""
    live, base_url = live_server
    pages = []

    def open_page(path, user=None, theme=LIGHT, scheme="light", init_data=None):
        if init_data is None:
            init_data = sign_user(live.config["TELEGRAM_BOT_TOKEN"], user.as_dict())
        context = browser.new_context(viewport=PHONE, device_scale_factor=2)
        config = {
            "initData": init_data,
            "colorScheme": scheme,
            "themeParams": theme,
            "height": PHONE["height"],
        }
        context.route(
            TELEGRAM_SCRIPT,
            lambda route: route.fulfill(
                content_type="text/javascript", body=STAND_IN % json.dumps(config)
            ),
        )
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        page.goto(base_url + path)
        pages.append(page)
        return page

    yield open_page

    for page in pages:
        assert page.errors == []
        page.context.close()


def telegram_calls(page) -> list[str]:
    return page.evaluate("JSON.parse(sessionStorage.getItem('telegram-calls') || '[]')")


def press_main_button(page):
    page.evaluate("Telegram.WebApp.MainButton.press()")


def background(page, selector="body") -> tuple[int, int, int]:
    color = page.eval_on_selector(selector, "e => getComputedStyle(e).backgroundColor")
    return tuple(int(part) for part in color[4:-1].split(",")[:3])


def is_dark(rgb) -> bool:
    red, green, blue = rgb
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue < 80


def sign_in_to_console(browser, base_url):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(f"{base_url}/login")
    page.fill("input[name=email]", "alice@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/console/")
    page.wait_for_function("document.body.classList.contains('offline') === false")
    return page


def add_categories(live, *names):
    with live.app_context():
        admin = Staff(email="setup@example.com", name="Setup", password_hash="x")
        for name in names:
            categories.add(name, by=admin)
        db.session.commit()


def test_a_request_sent_from_the_form_reaches_the_console(
    live_server, browser, mini_app, telegram, make_staff
):
    live, base_url = live_server
    make_staff("Alice")
    add_categories(live, "Billing", "Delivery", "Returns")
    console = sign_in_to_console(browser, base_url)
    user = telegram.user(first_name="Carol", username="carol")

    page = mini_app("/app/new", user)

    page.wait_for_function("document.body.dataset.state === 'ready'")
    assert page.locator("#outside").is_hidden()
    assert page.evaluate("Telegram.WebApp.MainButton.text") == "Send request"
    assert page.evaluate("Telegram.WebApp.MainButton.isVisible") is True
    assert page.evaluate("Telegram.WebApp.BackButton.isVisible") is True

    # Submitting the empty form shows each problem beside its field.
    press_main_button(page)
    assert page.text_content("#subject-error") == (
        "Write a subject: a few words on what it is about."
    )
    assert page.text_content("#category-error") == "Choose a category."
    assert "haptic.error" in telegram_calls(page)

    page.select_option("#category", "Delivery")
    page.fill("#subject", "Parcel never arrived")
    page.fill("#description", "Order 1234 was due on Monday.\nTracking says delivered.")
    page.set_input_files(
        "#files", [{"name": "receipt.png", "mimeType": "image/png", "buffer": PNG}]
    )
    page.locator("#chosen-files", has_text="receipt.png").wait_for()
    assert page.text_content("#subject-error") == ""
    screenshot(page, "miniapp-form-light")

    press_main_button(page)

    page.wait_for_url(f"{base_url}/app/tickets/*")
    page.locator(".message.mine", has_text="Tracking says delivered").wait_for()
    page.locator(".message.mine img[alt='receipt.png']").wait_for()
    assert "haptic.success" in telegram_calls(page)
    console.locator("#queue tbody tr", has_text="Parcel never arrived").wait_for()
    [confirmation] = telegram.wait_for("sendMessage")
    assert "Parcel never arrived" in confirmation.params["text"]


def test_staff_replies_appear_live_in_the_chat_and_are_seen(
    live_server, browser, mini_app, telegram, make_staff
):
    live, base_url = live_server
    make_staff("Alice Cooper", email="alice@example.com")
    user = telegram.user(first_name="Carol")
    with live.app_context():
        customer = customers.record_customer(customers.Profile(user.id, "Carol"))
        ticket = tickets.open_request(
            customer, "Invoice is wrong", "The VAT number on invoice 88 is wrong."
        )
        db.session.commit()
        ticket_id = ticket.id
    page = mini_app(f"/app/tickets/{ticket_id}", user)
    page.locator(".message.mine", has_text="VAT number").wait_for()
    page.wait_for_function("document.body.dataset.state === 'ready'")

    console = sign_in_to_console(browser, base_url)
    console.goto(f"{base_url}/console/tickets/{ticket_id}")
    console.wait_for_function("document.body.classList.contains('offline') === false")

    # Staff typing shows in the Mini App, and the reply arrives without a reload.
    page.evaluate("window.__notReloaded = true")
    console.type("#reply-text", "Sorry about that")
    page.locator("#typing", has_text="Support is typing").wait_for()
    console.fill(
        "#reply-text", "Sorry about that! We will send a corrected invoice today."
    )
    console.press("#reply-text", "Enter")
    reply = page.locator(".message.theirs", has_text="corrected invoice")
    reply.wait_for()
    assert reply.locator(".author").text_content() == "Alice"
    assert page.evaluate("window.__notReloaded") is True
    page.locator("#chat-status", has_text="Answered").wait_for()

    # The console learns that the customer has seen the reply.
    console.locator("#timeline .message-reply [data-delivery-state=seen]").wait_for(
        timeout=10000
    )

    # The customer answers from the Mini App, with a file; staff see it live.
    page.fill("#chat-text", "Thank you, that was quick!")
    page.set_input_files(
        "#chat-files",
        [
            {"name": "old.png", "mimeType": "image/png", "buffer": PNG},
            {
                "name": "invoice-88.pdf",
                "mimeType": "application/pdf",
                "buffer": b"%PDF",
            },
        ],
    )
    page.click("#chat-send")
    page.locator(".message.mine", has_text="that was quick").wait_for()
    # The socket may show the message before the post's answer clears the box.
    page.wait_for_function("document.getElementById('chat-text').value === ''")
    console.locator("#timeline .message-customer", has_text="that was quick").wait_for()
    console.locator("#timeline .message-customer img").wait_for()
    page.locator(".message.mine img[alt='old.png']").wait_for()
    document = page.locator(".message.mine a.file", has_text="invoice-88.pdf")
    assert document.get_attribute("download") == "invoice-88.pdf"
    screenshot(page, "miniapp-chat-light")

    # Going back leaves the chat for the list, which shows the request.
    # Pressed after evaluate returns: the press navigates away.
    page.evaluate("setTimeout(() => Telegram.WebApp.BackButton.press())")
    page.wait_for_url(f"{base_url}/app")
    row = page.locator("#tickets .ticket", has_text="Invoice is wrong")
    row.wait_for()
    assert "Open" in row.text_content()


def test_dark_theme_parameters_give_a_dark_page_that_follows_changes(
    live_server, mini_app, telegram
):
    live, base_url = live_server
    add_categories(live, "Billing", "Delivery")
    user = telegram.user(first_name="Dana")
    with live.app_context():
        customer = customers.record_customer(customers.Profile(user.id, "Dana"))
        ticket = tickets.open_request(
            customer, "App crashes on start", "Since the update the app closes."
        )
        staff = Staff(email="bo@example.com", name="Bo", password_hash="x")
        db.session.add(staff)
        tickets.reply(ticket, staff, "Could you send us a screenshot?")
        db.session.commit()
        ticket_id = ticket.id

    form = mini_app("/app/new", user, theme=DARK, scheme="dark")
    form.wait_for_function("document.body.dataset.state === 'ready'")
    assert is_dark(background(form))
    assert form.evaluate("document.documentElement.dataset.theme") == "dark"
    form.fill("#subject", "Cannot log in")
    form.select_option("#category", "Billing")
    screenshot(form, "miniapp-form-dark")

    chat = mini_app(f"/app/tickets/{ticket_id}", user, theme=DARK, scheme="dark")
    chat.locator(".message.theirs", has_text="screenshot").wait_for()
    assert is_dark(background(chat))
    assert is_dark(background(chat, ".message.theirs .bubble"))
    screenshot(chat, "miniapp-chat-dark")

    # Telegram switches to its light theme: the open page follows.
    chat.evaluate(
        """theme => {
            Telegram.WebApp.colorScheme = "light";
            Telegram.WebApp.themeParams = theme;
            Telegram.WebApp.emit("themeChanged");
        }""",
        LIGHT,
    )
    assert not is_dark(background(chat))
    assert chat.evaluate("document.documentElement.dataset.theme") == "light"


def test_viewport_changes_resize_the_page(mini_app, telegram):
    page = mini_app("/app", telegram.user())
    page.wait_for_function("document.body.dataset.state === 'ready'")

    page.evaluate(
        """() => {
            Telegram.WebApp.viewportStableHeight = 500;
            Telegram.WebApp.emit("viewportChanged", { isStateStable: true });
        }"""
    )

    height = page.evaluate(
        "getComputedStyle(document.documentElement)"
        ".getPropertyValue('--viewport-height')"
    )
    assert height.strip() == "500px"


@pytest.mark.parametrize("init_data", ["", None])
def test_outside_telegram_the_page_says_to_open_it_from_the_bot(
    live_server, browser, init_data
):
    live, base_url = live_server
    page = browser.new_page(viewport=PHONE)
    if init_data is None:
        # Telegram's script unreachable: no Telegram object at all.
        page.route(TELEGRAM_SCRIPT, lambda route: route.abort())
    else:
        # Telegram's real script outside Telegram: an object with no initData.
        stub = STAND_IN % json.dumps(
            {"initData": "", "colorScheme": "light", "themeParams": {}, "height": 0}
        )
        page.route(
            TELEGRAM_SCRIPT,
            lambda route: route.fulfill(content_type="text/javascript", body=stub),
        )

    page.goto(f"{base_url}/app/new")

    page.wait_for_function("document.body.dataset.state === 'outside'")
    assert page.locator("#outside").is_visible()
    assert "Open this in Telegram" in page.text_content("#outside")
    assert page.locator("#request-form").is_hidden()


def test_a_request_of_someone_else_shows_as_not_found(live_server, mini_app, telegram):
    live, base_url = live_server
    owner, other = telegram.user(), telegram.user()
    with live.app_context():
        customer = customers.record_customer(customers.Profile(owner.id, "Own"))
        tickets.open_request(customer, "Private", "Only mine")
        db.session.commit()
        ticket_id = db.session.scalars(select(Ticket.id)).one()

    page = mini_app(f"/app/tickets/{ticket_id}", other)

    page.locator("#notice", has_text="no such request").wait_for()
    assert page.locator(".message").count() == 0
