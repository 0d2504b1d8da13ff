// Live updates for the staff console. The server sends small events over
// Socket.IO; the page fetches the rendered row or message and swaps it in, so
// all markup comes from the server's templates.
(() => {
  "use strict";

  const csrfToken = document.querySelector('meta[name="csrf-token"]').content;
  const queue = document.getElementById("queue");
  const ticket = document.getElementById("ticket");
  const ticketId = ticket ? Number(ticket.dataset.ticketId) : null;
  const baseTitle = document.title.replace(/^\(\d+\) /, "");

  const socket = io("/staff", { auth: { csrf_token: csrfToken } });

  async function fetchHtml(url) {
    const response = await fetch(url, { headers: { Accept: "text/html" } });
    if (response.status === 204 || response.status === 404) return null;
    if (!response.ok) throw new Error(`${url} answered ${response.status}`);
    return response.text();
  }

  function elementFrom(html) {
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content.firstElementChild;
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      body,
      headers: { "X-CSRFToken": csrfToken, Accept: "application/json" },
    });
  }

  async function refreshUnread() {
    const response = await fetch("/console/unread", {
      headers: { Accept: "application/json" },
    });
    if (!response.ok) return;
    const { unread } = await response.json();
    document.title = unread ? `(${unread}) ${baseTitle}` : baseTitle;
  }

  function showConnection(connected) {
    document.body.classList.toggle("offline", !connected);
  }

  socket.on("connect", () => {
    showConnection(true);
    if (ticketId) {
      // Whatever happened before the room was joined is fetched once joined.
      socket.emit("join_ticket", { ticket_id: ticketId }, () =>
        document.dispatchEvent(new Event("ticket-joined")),
      );
    }
  });
  socket.on("disconnect", () => showConnection(false));
  socket.on("connect_error", (error) => {
    showConnection(false);
    console.warn("live updates unavailable:", error.message);
  });

  // The queue page.
  if (queue) {
    const body = queue.tBodies[0];
    const filters = new URLSearchParams({
      status: queue.dataset.status,
      scope: queue.dataset.scope,
      q: queue.dataset.search,
    });

    const placeRow = (row) => {
      // Oldest wait first, as the server sorts; closed tickets newest first.
      if (queue.dataset.status === "closed") return body.prepend(row);
      const waiting = row.dataset.waiting || "~";
      const after = [...body.rows].find(
        (other) => (other.dataset.waiting || "~") > waiting,
      );
      body.insertBefore(row, after || null);
    };

    const refreshRow = async (id) => {
      const html = await fetchHtml(`/console/tickets/${id}/row?${filters}`);
      const current = document.getElementById(`ticket-row-${id}`);
      if (html === null) {
        if (current) current.remove();
        return;
      }
      const row = elementFrom(html);
      row.classList.add("flash-row");
      if (current) current.replaceWith(row);
      else if (queue.dataset.firstPage === "true") placeRow(row);
      document.getElementById("queue-empty")?.remove();
    };

    socket.on("ticket_changed", ({ ticket_id }) => {
      refreshRow(ticket_id).then(refreshUnread).catch(console.error);
    });

    socket.on("customer_message", ({ ticket_id }) => {
      if (document.hidden && window.Notification?.permission === "granted") {
        new Notification(`New customer message on #${ticket_id}`, {
          tag: `ticket-${ticket_id}`,
        });
      }
    });

    const notifications = document.getElementById("enable-notifications");
    if (window.Notification && Notification.permission === "default") {
      notifications.hidden = false;
      notifications.addEventListener("click", async () => {
        await Notification.requestPermission();
        notifications.hidden = true;
      });
    }
  }

  // The ticket page.
  if (ticket) {
    const timeline = document.getElementById("timeline");
    const composer = document.getElementById("composer");
    const text = document.getElementById("reply-text");
    const noteToggle = document.getElementById("note-toggle");
    const canned = document.getElementById("canned");
    const errorBox = document.getElementById("composer-error");
    const presence = document.getElementById("presence");
    const typing = document.getElementById("typing");
    const viewers = new Map();
    let typingTimer = null;
    let lastTypingSent = 0;

    const scrollToEnd = () => composer.scrollIntoView({ block: "end" });

    const markRead = () => {
      if (!document.hidden) post(`/console/tickets/${ticketId}/read`);
    };

    const upsert = (element) => {
      const current = document.getElementById(element.id);
      if (current) current.replaceWith(element);
      else timeline.append(element);
    };

    const showMessage = async (messageId) => {
      const html = await fetchHtml(`/console/messages/${messageId}`);
      if (html !== null) upsert(elementFrom(html));
    };

    const renderViewers = () => {
      const now = Date.now();
      for (const [id, viewer] of viewers) {
        if (viewer.until < now) viewers.delete(id);
      }
      const names = [...viewers.values()].map((viewer) => viewer.name);
      presence.textContent = names.length
        ? `${names.join(", ")} ${names.length === 1 ? "is" : "are"} viewing this ticket`
        : "";
    };

    socket.on("message_created", async ({ ticket_id, message_id }) => {
      if (ticket_id !== ticketId) return;
      await showMessage(message_id);
      scrollToEnd();
      markRead();
    });

    socket.on("delivery_changed", ({ ticket_id, message_id }) => {
      if (ticket_id === ticketId && message_id) showMessage(message_id);
    });

    socket.on("ticket_event_created", async ({ ticket_id, event_id }) => {
      if (ticket_id !== ticketId) return;
      const html = await fetchHtml(`/console/events/${event_id}`);
      if (html !== null) upsert(elementFrom(html));
    });

    socket.on("ticket_changed", async ({ ticket_id }) => {
      if (ticket_id !== ticketId) return;
      const html = await fetchHtml(`/console/tickets/${ticketId}/summary`);
      if (html !== null) document.getElementById("ticket-summary").innerHTML = html;
    });

    socket.on("presence", ({ ticket_id, staff, state }) => {
      if (ticket_id !== ticketId) return;
      if (state === "left") viewers.delete(staff.id);
      else viewers.set(staff.id, { name: staff.name, until: Date.now() + 40000 });
      // A newcomer learns who is already here from the answer.
      if (state === "joined") socket.emit("viewing", { ticket_id: ticketId });
      renderViewers();
    });

    socket.on("typing", ({ ticket_id, staff }) => {
      if (ticket_id !== ticketId) return;
      typing.textContent = `${staff.name} is typing…`;
      clearTimeout(typingTimer);
      typingTimer = setTimeout(() => (typing.textContent = ""), 5000);
    });

    setInterval(() => {
      if (socket.connected) socket.emit("viewing", { ticket_id: ticketId });
      renderViewers();
    }, 15000);

    const send = async () => {
      errorBox.textContent = "";
      const file = document.getElementById("reply-file");
      if (!text.value.trim() && !file.files.length) return;
      const response = await post(composer.action, new FormData(composer));
      const result = await response.json().catch(() => ({}));
      if (!response.ok) {
        errorBox.textContent = result.error || "The message was not sent.";
        return;
      }
      text.value = "";
      file.value = "";
      await showMessage(result.message_id);
      scrollToEnd();
    };

    composer.addEventListener("submit", (event) => {
      event.preventDefault();
      send().catch(() => (errorBox.textContent = "The message was not sent."));
    });

    text.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        composer.requestSubmit();
      }
    });

    text.addEventListener("input", () => {
      const now = Date.now();
      if (now - lastTypingSent < 2000) return;
      lastTypingSent = now;
      socket.emit("typing", { ticket_id: ticketId, note: noteToggle.checked });
    });

    const showNoteState = () =>
      composer.classList.toggle("is-note", noteToggle.checked);
    noteToggle.addEventListener("change", showNoteState);
    showNoteState();

    canned.addEventListener("change", () => {
      if (!canned.value) return;
      const start = text.selectionStart;
      text.setRangeText(canned.value, start, text.selectionEnd, "end");
      canned.value = "";
      text.focus();
    });

    document.addEventListener("keydown", (event) => {
      if (event.altKey && event.key.toLowerCase() === "c") {
        event.preventDefault();
        canned.focus();
      }
    });

    // A failed reply's "Send again" queues it anew; its state then updates live.
    timeline.addEventListener("submit", async (event) => {
      const form = event.target.closest("form.resend");
      if (!form) return;
      event.preventDefault();
      form.querySelector("button").disabled = true;
      const response = await post(form.action, new FormData(form));
      const result = await response.json().catch(() => ({}));
      if (!response.ok) {
        errorBox.textContent = result.error || "The message was not queued again.";
        form.querySelector("button").disabled = false;
        return;
      }
      await showMessage(result.message_id);
    });

    document.addEventListener("ticket-joined", async () => {
      // The same part of the history as the page: its latest, or all of it.
      const html = await fetchHtml(
        `/console/tickets/${ticketId}/timeline${window.location.search}`,
      );
      if (html !== null) timeline.innerHTML = html;
      scrollToEnd();
      markRead();
    });

    document.addEventListener("visibilitychange", markRead);
    scrollToEnd();
  }
})();
