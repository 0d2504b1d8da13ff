// The Mini App's pages: theme, Telegram's buttons, the API and live updates.
(() => {
  "use strict";

  const body = document.body;
  const webApp = window.Telegram && window.Telegram.WebApp;

  // Outside Telegram there is no signed initData: say where to open the app.
  if (!webApp || !webApp.initData) {
    body.dataset.state = "outside";
    return;
  }
  const initData = webApp.initData;
  const page = body.dataset.page;
  const maxFiles = Number(body.dataset.maxFiles);
  const maxFileBytes = Number(body.dataset.maxFileBytes);
  const maxFileText = body.dataset.maxFileText;

  // Telegram's theme parameters, as the CSS variables the stylesheet uses.
  const THEME_VARIABLES = {
    bg_color: "--bg",
    text_color: "--text",
    hint_color: "--hint",
    link_color: "--link",
    button_color: "--button",
    button_text_color: "--button-text",
    secondary_bg_color: "--secondary-bg",
    section_bg_color: "--section-bg",
    section_separator_color: "--separator",
    subtitle_text_color: "--subtitle",
    destructive_text_color: "--destructive",
    accent_text_color: "--accent",
  };
  const COLOR = /^#[0-9a-f]{3,8}$/i;

  function applyTheme() {
    const root = document.documentElement;
    const params = webApp.themeParams || {};
    root.dataset.theme = webApp.colorScheme === "dark" ? "dark" : "light";
    for (const [key, variable] of Object.entries(THEME_VARIABLES)) {
      const value = params[key];
      if (typeof value === "string" && COLOR.test(value)) {
        root.style.setProperty(variable, value);
      } else {
        root.style.removeProperty(variable);
      }
    }
  }

  function applyViewport() {
    // The stable height does not jump while the user drags the sheet.
    const height = webApp.viewportStableHeight || webApp.viewportHeight;
    if (height) {
      document.documentElement.style.setProperty("--viewport-height", `${height}px`);
    }
    if (page === "chat") scrollToEnd();
  }

  function call(target, method, ...args) {
    // Older Telegram clients lack some methods; the page works without them.
    if (target && typeof target[method] === "function") target[method](...args);
  }

  function haptic(kind) {
    call(webApp.HapticFeedback, "notificationOccurred", kind);
  }

  const notice = document.getElementById("notice");

  function showNotice(text) {
    notice.textContent = text;
    notice.hidden = !text;
  }

  async function api(path, options = {}) {
    const response = await fetch(path, {
      ...options,
      headers: {
        Authorization: `tma ${initData}`,
        Accept: "application/json",
        ...(options.headers || {}),
      },
    });
    const result = await response.json().catch(() => ({}));
    if (response.status === 401) {
      showNotice(result.error || "Your session has ended: close the app and open it again.");
    }
    return { response, result };
  }

  function formatTime(iso, withDate) {
    if (!iso) return "";
    const moment = new Date(iso);
    const today = new Date().toDateString() === moment.toDateString();
    const options = today && !withDate
      ? { hour: "2-digit", minute: "2-digit" }
      : { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" };
    return new Intl.DateTimeFormat(undefined, options).format(moment);
  }

  function formatSize(bytes) {
    if (!bytes && bytes !== 0) return "";
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
    return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
  }

  function fileProblems(files) {
    if (files.length > maxFiles) return `Attach at most ${maxFiles} files.`;
    const large = files.find((file) => file.size > maxFileBytes);
    if (large) {
      return `“${large.name}” is larger than ${maxFileText}, the largest file you can attach.`;
    }
    return "";
  }

  function showChosen(list, files) {
    list.replaceChildren(
      ...files.map((file) => {
        const item = document.createElement("li");
        const name = document.createElement("span");
        const size = document.createElement("span");
        name.textContent = file.name;
        size.textContent = formatSize(file.size);
        size.className = file.size > maxFileBytes ? "size too-large" : "size";
        item.append(name, size);
        return item;
      }),
    );
  }

  function connectLive() {
    // Same initData as the API: the server checks it before joining a room.
    return window.io("/customer", { auth: { init_data: initData } });
  }

  function scrollToEnd() {
    window.scrollTo(0, document.documentElement.scrollHeight);
  }

  function setUpBackButton() {
    if (page === "list") {
      call(webApp.BackButton, "hide");
      return;
    }
    // Back goes up to the list: a Mini App opened on this page by a button
    // in the chat has no page of its own to go back to.
    call(webApp.BackButton, "show");
    call(webApp.BackButton, "onClick", () => window.location.assign("/app"));
  }

  // My requests.
  function startList() {
    const list = document.getElementById("tickets");
    const empty = document.getElementById("empty");
    const template = document.getElementById("ticket-template");
    call(webApp.MainButton, "hide");

    const render = (ticket) => {
      const item = template.content.firstElementChild.cloneNode(true);
      item.id = `ticket-${ticket.id}`;
      item.querySelector(".ticket-link").href = ticket.url;
      item.querySelector(".ticket-subject").textContent = `#${ticket.id} ${ticket.subject}`;
      item.querySelector(".ticket-preview").textContent = ticket.last_message;
      const time = item.querySelector("time");
      time.dateTime = ticket.last_message_at;
      time.textContent = formatTime(ticket.last_message_at);
      const status = item.querySelector(".status");
      status.textContent = ticket.status_label;
      status.classList.add(`status-${ticket.status}`);
      return item;
    };

    const load = async () => {
      const { response, result } = await api("/app/api/tickets");
      list.setAttribute("aria-busy", "false");
      if (!response.ok) {
        if (response.status !== 401) showNotice(result.error || "Your requests could not be loaded.");
        return;
      }
      list.replaceChildren(...result.tickets.map(render));
      empty.hidden = result.tickets.length > 0;
    };

    const socket = connectLive();
    socket.on("connect", () => load().catch(console.error));
    socket.on("ticket_changed", () => load().catch(console.error));
    load().catch(() => showNotice("Your requests could not be loaded."));
  }

  // New request.
  function startForm() {
    const form = document.getElementById("request-form");
    const fileInput = document.getElementById("files");
    const chosen = document.getElementById("chosen-files");
    const formError = document.getElementById("form-error");
    const fallback = document.getElementById("submit");
    const mainButton = webApp.MainButton;
    let busy = false;

    const setError = (name, message) => {
      const field = form.querySelector(`[data-field="${name}"]`);
      if (!field) {
        formError.textContent = message;
        return;
      }
      field.classList.toggle("invalid", Boolean(message));
      field.querySelector(".field-error").textContent = message || "";
      const input = field.querySelector("input, select, textarea");
      if (input) input.setAttribute("aria-invalid", message ? "true" : "false");
    };

    const clearErrors = () => {
      for (const field of form.querySelectorAll("[data-field]")) {
        setError(field.dataset.field, "");
      }
      formError.textContent = "";
    };

    const localErrors = () => {
      const errors = {};
      const category = form.elements.category;
      if (category && !category.value) errors.category = "Choose a category.";
      if (!form.elements.subject.value.trim()) {
        errors.subject = "Write a subject: a few words on what it is about.";
      }
      if (!form.elements.description.value.trim()) {
        errors.description = "Describe what happened.";
      }
      const files = fileProblems([...fileInput.files]);
      if (files) errors.files = files;
      return errors;
    };

    const showErrors = (errors) => {
      for (const [name, message] of Object.entries(errors)) setError(name, message);
      const first = form.querySelector(".field.invalid input, .field.invalid select, .field.invalid textarea");
      if (first) first.focus();
      haptic("error");
    };

    const busyState = (on) => {
      busy = on;
      fallback.disabled = on;
      if (on) {
        call(mainButton, "showProgress", false);
        call(mainButton, "disable");
      } else {
        call(mainButton, "hideProgress");
        call(mainButton, "enable");
      }
    };

    const submit = async () => {
      if (busy) return;
      clearErrors();
      const errors = localErrors();
      if (Object.keys(errors).length) {
        showErrors(errors);
        return;
      }

      busyState(true);
      try {
        const { response, result } = await api(form.action, {
          method: "POST",
          body: new FormData(form),
        });
        if (response.ok) {
          haptic("success");
          window.location.replace(result.ticket.url);
          return;
        }
        if (result.fields) showErrors(result.fields);
        else if (response.status === 413) showErrors({ files: result.error });
        else if (response.status !== 401) {
          formError.textContent = result.error || "The request was not sent. Try again.";
          haptic("error");
        }
      } catch (error) {
        formError.textContent = "The request was not sent: check your connection and try again.";
        haptic("error");
      } finally {
        busyState(false);
      }
    };

    form.addEventListener("submit", (event) => {
      event.preventDefault();
      submit();
    });
    form.addEventListener("input", (event) => {
      const field = event.target.closest("[data-field]");
      if (field && field.classList.contains("invalid")) setError(field.dataset.field, "");
    });
    fileInput.addEventListener("change", () => {
      const files = [...fileInput.files];
      showChosen(chosen, files);
      setError("files", fileProblems(files));
    });

    if (mainButton && typeof mainButton.onClick === "function") {
      call(mainButton, "setText", "Send request");
      call(mainButton, "onClick", submit);
      call(mainButton, "show");
    } else {
      fallback.hidden = false;
    }
  }

  // One request's chat.
  function startChat() {
    const ticketId = Number(body.dataset.ticketId);
    const list = document.getElementById("messages");
    const template = document.getElementById("message-template");
    const composer = document.getElementById("composer");
    const area = document.getElementById("composer-area");
    const text = document.getElementById("chat-text");
    const fileInput = document.getElementById("chat-files");
    const chosen = document.getElementById("chat-chosen");
    const composerError = document.getElementById("composer-error");
    const sendButton = document.getElementById("chat-send");
    const typing = document.getElementById("typing");
    const shown = new Set();
    let lastId = 0;
    let seenReported = 0;
    let typingTimer = null;
    call(webApp.MainButton, "hide");

    const showTicket = (ticket) => {
      document.getElementById("chat-title").textContent = `#${ticket.id} ${ticket.subject}`;
      document.title = `#${ticket.id} ${ticket.subject}`;
      const status = document.getElementById("chat-status");
      status.textContent = ticket.status_label;
      status.className = `status status-${ticket.status}`;
      document.getElementById("chat-category").textContent = ticket.category || "";
      area.classList.toggle("closed", ticket.closed);
      document.getElementById("closed-note").hidden = !ticket.closed;
    };

    const renderAttachment = (box, attachment) => {
      if (!attachment) return;
      if (attachment.image && attachment.url) {
        const link = document.createElement("a");
        const image = document.createElement("img");
        link.href = attachment.url;
        link.target = "_blank";
        image.src = attachment.url;
        image.alt = attachment.name;
        image.loading = "lazy";
        image.addEventListener("load", () => {
          if (image.closest(".message") === list.lastElementChild) scrollToEnd();
        });
        link.append(image);
        box.append(link);
        return;
      }
      const file = document.createElement(attachment.url ? "a" : "span");
      file.className = "file";
      const size = formatSize(attachment.size);
      file.textContent = size ? `${attachment.name} (${size})` : attachment.name;
      if (attachment.url) {
        file.href = attachment.url;
        file.download = attachment.name;
      }
      box.append(file);
    };

    const render = (message) => {
      const item = template.content.firstElementChild.cloneNode(true);
      item.id = `message-${message.id}`;
      item.dataset.messageId = message.id;
      item.classList.add(message.from === "customer" ? "mine" : "theirs");
      item.querySelector(".author").textContent = message.author;
      item.querySelector(".text").textContent = message.text;
      item.querySelector(".edited").hidden = !message.edited;
      const time = item.querySelector("time");
      time.dateTime = message.created_at;
      time.textContent = formatTime(message.created_at);
      renderAttachment(item.querySelector(".attachment"), message.attachment);
      return item;
    };

    const upsert = (message) => {
      const item = render(message);
      const current = document.getElementById(item.id);
      if (current) current.replaceWith(item);
      else list.append(item);
      shown.add(message.id);
      lastId = Math.max(lastId, message.id);
    };

    const reportSeen = () => {
      if (document.hidden) return;
      const replies = [...list.querySelectorAll(".message.theirs")];
      const latest = replies.length ? Number(replies[replies.length - 1].dataset.messageId) : 0;
      if (latest <= seenReported) return;
      seenReported = latest;
      api(`/app/api/tickets/${ticketId}/seen`, {
        method: "POST",
        body: JSON.stringify({ message_id: latest }),
        headers: { "Content-Type": "application/json" },
      }).catch(console.error);
    };

    const load = async (after) => {
      const { response, result } = await api(
        `/app/api/tickets/${ticketId}/messages?after=${after}`,
      );
      list.setAttribute("aria-busy", "false");
      if (!response.ok) {
        if (response.status === 404) {
          showNotice("There is no such request among yours.");
          area.hidden = true;
        } else if (response.status !== 401) {
          showNotice(result.error || "The conversation could not be loaded.");
        }
        return;
      }
      showTicket(result.ticket);
      result.messages.forEach(upsert);
      scrollToEnd();
      reportSeen();
    };

    const refreshTicket = async () => {
      const { response, result } = await api(`/app/api/tickets/${ticketId}`);
      if (response.ok) showTicket(result.ticket);
    };

    const send = async () => {
      composerError.textContent = "";
      const files = [...fileInput.files];
      if (!text.value.trim() && !files.length) return;
      const problem = fileProblems(files);
      if (problem) {
        composerError.textContent = problem;
        haptic("error");
        return;
      }

      sendButton.disabled = true;
      try {
        const { response, result } = await api(composer.action, {
          method: "POST",
          body: new FormData(composer),
        });
        if (!response.ok) {
          if (response.status !== 401) {
            composerError.textContent = result.error || "The message was not sent.";
          }
          if (response.status === 409) refreshTicket();
          haptic("error");
          return;
        }
        result.messages.forEach(upsert);
        text.value = "";
        fileInput.value = "";
        showChosen(chosen, []);
        resize();
        scrollToEnd();
      } catch (error) {
        composerError.textContent = "The message was not sent: check your connection.";
        haptic("error");
      } finally {
        sendButton.disabled = false;
      }
    };

    const resize = () => {
      text.style.height = "auto";
      text.style.height = `${text.scrollHeight + 2}px`;
    };

    composer.addEventListener("submit", (event) => {
      event.preventDefault();
      send();
    });
    text.addEventListener("input", resize);
    text.addEventListener("keydown", (event) => {
      // Enter is a new line on phones; Ctrl or Cmd with Enter sends.
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        send();
      }
    });
    fileInput.addEventListener("change", () => {
      const files = [...fileInput.files];
      showChosen(chosen, files);
      composerError.textContent = fileProblems(files);
    });
    document.addEventListener("visibilitychange", reportSeen);

    const socket = connectLive();
    // After a reconnect, whatever arrived meanwhile is fetched.
    socket.on("connect", () => load(lastId).catch(console.error));
    socket.on("message_created", ({ ticket_id, message_id }) => {
      if (ticket_id !== ticketId) return;
      typing.textContent = "";
      // An edit changes a message already shown: fetch the whole conversation.
      load(shown.has(message_id) ? 0 : lastId).catch(console.error);
    });
    socket.on("ticket_changed", ({ ticket_id }) => {
      if (ticket_id === ticketId) refreshTicket().catch(console.error);
    });
    socket.on("typing", ({ ticket_id }) => {
      if (ticket_id !== ticketId) return;
      typing.textContent = "Support is typing…";
      clearTimeout(typingTimer);
      typingTimer = setTimeout(() => (typing.textContent = ""), 6000);
    });

    load(0).catch(() => showNotice("The conversation could not be loaded."));
  }

  call(webApp, "onEvent", "themeChanged", applyTheme);
  call(webApp, "onEvent", "viewportChanged", applyViewport);
  applyTheme();
  applyViewport();
  body.dataset.state = "ready";
  setUpBackButton();

  if (page === "list") startList();
  else if (page === "new") startForm();
  else if (page === "chat") startChat();

  call(webApp, "ready");
  call(webApp, "expand");
})();
