"""The console in a real browser: headless Chromium driven by Playwright."""

from sqlalchemy import select

from supportbot.extensions import db
from supportbot.models import LogRecord, StaffRole, Ticket

from helpers import PASSWORD, needs_chromium, screenshot

pytestmark = needs_chromium


def test_staff_answers_a_customer_live(live_server, browser, telegram, make_staff):
    live, base_url = live_server
    make_staff("Alice")
    telegram.set_webhook(
        f"{base_url}/telegram/webhook", secret_token="test-webhook-secret"
    )
    # Without the page's CSP, so that the test's own probes may run, and so
    # that escaping alone is what keeps a customer's markup inert.
    page = browser.new_page(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto(f"{base_url}/login")
    page.fill("input[name=email]", "alice@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/console/")
    page.wait_for_function("document.body.classList.contains('offline') === false")

    # A customer writes while the queue is open: the row appears, no reload.
    carol = telegram.user(first_name="Carol", username="carol")
    page.evaluate("window.__notReloaded = true")
    assert telegram.push(carol.text("My parcel never arrived")).status == 200
    row = page.locator("#queue tbody tr", has_text="My parcel never arrived")
    row.wait_for()
    assert page.evaluate("window.__notReloaded") is True
    page.wait_for_function("document.title.startsWith('(1)')")
    telegram.push(telegram.user(first_name="Dan").text("Where is my invoice?"))
    page.locator("#queue tbody tr", has_text="invoice").wait_for()
    screenshot(page, "queue", full_page=True)

    with live.app_context():
        ticket_id = db.session.scalars(
            select(Ticket.id).order_by(Ticket.id).limit(1)
        ).one()

    # The ticket page gets the customer's next message live.
    row.locator("a").first.click()
    page.wait_for_url(f"{base_url}/console/tickets/{ticket_id}")
    telegram.push(carol.text("Order number 1234"))
    page.locator("#timeline .message-customer", has_text="Order number 1234").wait_for()

    # Markup from a customer is shown as text and runs nothing.
    telegram.push(
        carol.text(
            '<script>window.__xss = 1</script><img src=x onerror="window.__xss=2">'
        )
    )
    page.locator("#timeline .message-customer", has_text="<script>").wait_for()
    assert page.evaluate("window.__xss") is None
    assert page.locator("#timeline img[src=x]").count() == 0

    # A reply goes out with Enter, reaches Telegram and turns to sent.
    page.fill("#reply-text", "It is on its way, Carol!")
    page.press("#reply-text", "Enter")
    reply = page.locator("#timeline .message-reply", has_text="It is on its way")
    reply.wait_for()
    telegram.wait_for(
        "sendMessage", where=lambda call: "on its way" in call.params.get("text", "")
    )
    reply.locator("[data-delivery-state=sent]").wait_for(timeout=10000)
    assert page.input_value("#reply-text") == ""
    screenshot(page, "ticket", full_page=True)

    assert errors == []


def test_dashboard_draws_charts_and_log_filters_work(
    live_server, browser, make_staff, telegram
):
    live, base_url = live_server
    make_staff("Ada", role=StaffRole.ADMIN)
    for name in ("Eve", "Finn", "Gus"):
        telegram.set_webhook(
            f"{base_url}/telegram/webhook", secret_token="test-webhook-secret"
        )
        telegram.push(telegram.user(first_name=name).text(f"help from {name}"))
    with live.app_context():
        db.session.add_all(
            [
                LogRecord(
                    level=20, logger="supportbot.outbox", message="outbox 1 sent"
                ),
                LogRecord(level=40, logger="supportbot.errors", message="it broke"),
            ]
        )
        db.session.commit()
    page = browser.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto(f"{base_url}/login")
    page.fill("input[name=email]", "ada@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{base_url}/admin/dashboard")
    page.wait_for_function("document.body.dataset.dashboard === 'drawn'")

    assert page.text_content("[data-figure=opened]") == "3"
    assert page.locator("#volume-chart canvas").count() == 1
    assert page.locator("#backlog-chart canvas").count() == 1
    # The chart has drawn something: its pixels are not all one colour.
    painted = page.evaluate(
        """() => {
          const canvas = document.querySelector('#volume-chart canvas');
          const data = canvas.getContext('2d')
            .getImageData(0, 0, canvas.width, canvas.height).data;
          const colours = new Set();
          for (let i = 0; i < data.length; i += 400) {
            colours.add(data[i] + ',' + data[i + 3]);
          }
          return colours.size;
        }"""
    )
    assert painted > 2
    screenshot(page, "dashboard", full_page=True)

    page.goto(f"{base_url}/admin/logs")
    assert page.locator("#log-table tbody tr", has_text="outbox 1 sent").count() == 1
    page.select_option("select[name=level]", "ERROR")
    page.click("#log-filters button[type=submit]")
    page.wait_for_url("**level=ERROR**")
    assert page.locator("#log-table tbody tr", has_text="it broke").count() == 1
    assert page.locator("#log-table tbody tr", has_text="outbox 1 sent").count() == 0
    assert errors == []
