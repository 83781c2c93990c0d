// The demo chat app of `cariosan dev`, built on the SDK only. Sign in as any user id
// (`/?user=alice`); the dev server's /demo/token hands out tokens (it exists in dev mode only).
import { CariosanError, ChatClient, type Channel, type LiveStream, type Message } from "../src/index.js";

const $ = <T extends HTMLElement>(selector: string, root: ParentNode = document): T => {
  const found = root.querySelector<T>(selector);
  if (!found) throw new Error(`missing ${selector}`);
  return found;
};
function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

const PAGE = 30;
const userId = new URLSearchParams(location.search).get("user")?.trim() ?? "";

async function fetchToken(): Promise<string> {
  const response = await fetch("/demo/token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user_id: userId }),
  });
  if (!response.ok) throw new Error(`no token for ${userId}: HTTP ${response.status}`);
  return ((await response.json()) as { token: string }).token;
}

// ---- state ------------------------------------------------------------------------------------

const channels = new Map<string, Channel>();
let order: string[] = [];
let active: string | null = null;
let hasMore = false;
let loadingOlder = false;
let thread: Message | null = null;
const messages = new Map<string, Message>(); // of the active channel (and its open thread)
const typingUsers = new Map<string, ReturnType<typeof setTimeout>>();
const online = new Set<string>();
let pendingUpload: { id: string; filename: string } | null = null;

const chat = new ChatClient({ baseUrl: location.origin, tokenProvider: fetchToken });
let stream: LiveStream;

// ---- rendering --------------------------------------------------------------------------------

function channelTitle(channel: Channel): string {
  if (channel.name) return channel.name;
  const others = (channel.members ?? []).map((m) => m.user_id).filter((id) => id !== userId);
  return others.length ? others.join(", ") : channel.id;
}

function renderChannels(): void {
  const list = $("[data-testid=channel-list]");
  list.replaceChildren(
    ...order.map((id) => {
      const channel = channels.get(id)!;
      const unread = channel.unread_count ?? 0;
      const item = el("li", { "data-testid": "channel-item", "data-channel-id": id, class: id === active ? "active" : "" },
        el("span", { class: "name" }, channelTitle(channel)));
      if (unread > 0 && id !== active) item.append(el("span", { "data-testid": "unread-badge", class: "badge" }, String(unread)));
      item.addEventListener("click", () => void openChannel(id));
      return item;
    }),
  );
}

function renderHeader(): void {
  const header = $("#channel-header");
  const channel = active ? channels.get(active) : undefined;
  if (!channel) {
    header.replaceChildren("Pick a channel or make one.");
    return;
  }
  const members = (channel.members ?? []).map((m) =>
    el("span", { class: "member", "data-testid": "member", "data-user-id": m.user_id },
      el("span", { class: `presence ${online.has(m.user_id) || m.user_id === userId ? "online" : "offline"}`, "data-testid": "presence" }),
      m.user_id),
  );
  header.replaceChildren(el("strong", {}, channelTitle(channel)), " ", ...members);
}

function messageText(message: Message): Node {
  const span = el("span", { class: "text", "data-testid": "message-text" });
  for (const part of message.text.split(/(@[A-Za-z0-9_.@-]+)/)) {
    if (part.startsWith("@") && message.mentions.includes(part.slice(1))) span.append(el("span", { class: "mention" }, part));
    else span.append(part);
  }
  return span;
}

function renderMessage(message: Message, inThread = false): HTMLElement {
  const item = el("li", { "data-testid": "message", "data-message-id": message.id, class: message.user_id === userId ? "own" : "" },
    el("span", { class: "author" }, message.user_id));
  if (message.deleted_at) {
    item.append(el("em", { class: "deleted" }, "message deleted"));
    return item;
  }
  item.append(messageText(message));
  if (message.edited_at) item.append(el("small", { class: "edited" }, " (edited)"));
  for (const attachment of message.attachments) {
    const holder = el("div", { class: "attachment", "data-testid": "attachment" }, attachment.filename);
    item.append(holder);
    void chat.getAttachment(attachment.id).then((download) => {
      if (attachment.content_type.startsWith("image/")) {
        holder.replaceChildren(el("img", { src: download.url, alt: attachment.filename, "data-testid": "image-preview" }));
      } else {
        holder.replaceChildren(el("a", { href: download.url }, attachment.filename));
      }
    });
  }
  const reactions = el("span", { class: "reactions" });
  for (const [type, count] of Object.entries(message.reactions)) {
    reactions.append(el("span", { class: "reaction", "data-testid": "reaction" }, `${type} ${count}`));
  }
  item.append(reactions);
  const actions = el("span", { class: "actions" });
  const like = el("button", { "data-testid": "react" }, message.own_reactions.includes("like") ? "unlike" : "like");
  like.addEventListener("click", () =>
    void (message.own_reactions.includes("like") ? chat.removeReaction(message.id, "like") : chat.addReaction(message.id, "like")).then(upsertMessage));
  actions.append(like);
  if (!inThread && !message.parent_id) {
    const reply = el("button", { "data-testid": "reply" }, message.reply_count ? `${message.reply_count} ${message.reply_count === 1 ? "reply" : "replies"}` : "reply");
    reply.addEventListener("click", () => void openThread(message));
    actions.append(reply);
  }
  if (message.user_id === userId) {
    const edit = el("button", { "data-testid": "edit" }, "edit");
    edit.addEventListener("click", () => {
      const text = prompt("Edit message", message.text);
      if (text !== null && text.trim()) void chat.editMessage(message.id, text).then(upsertMessage);
    });
    const remove = el("button", { "data-testid": "delete" }, "delete");
    remove.addEventListener("click", () => void chat.deleteMessage(message.id));
    actions.append(edit, remove);
  }
  item.append(actions);
  return item;
}

function sorted(filter: (m: Message) => boolean): Message[] {
  return [...messages.values()].filter(filter).sort((a, b) => a.created_at.localeCompare(b.created_at) || a.id.localeCompare(b.id));
}

function renderMessages(keepBottom = true): void {
  const list = $("[data-testid=message-list]");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const fromBottom = list.scrollHeight - list.scrollTop;
  list.replaceChildren(...sorted((m) => m.parent_id === null).map((m) => renderMessage(m)));
  if (keepBottom && atBottom) list.scrollTop = list.scrollHeight;
  else if (!keepBottom) list.scrollTop = list.scrollHeight - fromBottom;
  if (thread) {
    const parent = messages.get(thread.id) ?? thread;
    $("#thread-parent").replaceChildren(renderMessage(parent, true));
    $("[data-testid=thread-list]").replaceChildren(...sorted((m) => m.parent_id === parent.id).map((m) => renderMessage(m, true)));
  }
}

function renderTyping(): void {
  const names = [...typingUsers.keys()];
  $("[data-testid=typing-indicator]").textContent = names.length ? `${names.join(", ")} ${names.length > 1 ? "are" : "is"} typing…` : "";
}

// ---- actions ----------------------------------------------------------------------------------

function moveToTop(channelId: string): void {
  order = [channelId, ...order.filter((id) => id !== channelId)];
}

async function loadChannels(): Promise<void> {
  const page = await chat.listChannels({ limit: 100 });
  const before = new Map(channels);
  channels.clear();
  // List items carry no members: keep those of channels already opened.
  for (const channel of page.channels) channels.set(channel.id, { ...channel, members: channel.members ?? before.get(channel.id)?.members });
  order = page.channels.map((c) => c.id);
  renderChannels();
}

async function openChannel(channelId: string): Promise<void> {
  active = channelId;
  thread = null;
  $("#thread").hidden = true;
  messages.clear();
  typingUsers.clear();
  renderTyping();
  const [detail, page] = await Promise.all([chat.getChannel(channelId), chat.listMessages(channelId, { limit: PAGE })]);
  if (active !== channelId) return;
  channels.set(channelId, { ...channels.get(channelId), ...detail, unread_count: 0 });
  for (const message of page.messages) messages.set(message.id, message);
  hasMore = page.has_more;
  history.replaceState(null, "", `?user=${encodeURIComponent(userId)}&channel=${encodeURIComponent(channelId)}`);
  renderChannels();
  renderHeader();
  renderMessages();
  const list = $("[data-testid=message-list]");
  list.scrollTop = list.scrollHeight;
  await chat.markRead(channelId);
}

async function loadOlder(): Promise<void> {
  if (!active || !hasMore || loadingOlder) return;
  const oldest = sorted((m) => m.parent_id === null)[0];
  if (!oldest) return;
  loadingOlder = true;
  try {
    const page = await chat.listMessages(active, { limit: PAGE, before: oldest.id });
    for (const message of page.messages) messages.set(message.id, message);
    hasMore = page.has_more;
    renderMessages(false);
  } finally {
    loadingOlder = false;
  }
}

async function openThread(parent: Message): Promise<void> {
  thread = parent;
  $("#thread").hidden = false;
  const page = await chat.replies(parent.id, { limit: 100 });
  for (const message of page.messages) messages.set(message.id, message);
  renderMessages();
}

function upsertMessage(message: Message, fromEvent = false): void {
  if (message.channel_id !== active) return;
  const known = messages.get(message.id);
  // Events carry no one's own reactions: keep ours from the last answer about the message.
  const own = fromEvent ? (known?.own_reactions ?? []).filter((r) => r in message.reactions) : message.own_reactions;
  messages.set(message.id, { ...message, own_reactions: own });
  const parent = message.parent_id === null ? undefined : messages.get(message.parent_id);
  if (!known && parent) messages.set(parent.id, { ...parent, reply_count: parent.reply_count + 1 });
  renderMessages();
}

function mentionsIn(text: string): string[] {
  const members = new Set((channels.get(active ?? "")?.members ?? []).map((m) => m.user_id));
  return [...new Set([...text.matchAll(/@([A-Za-z0-9_.@-]+)/g)].map((m) => m[1]!).filter((id) => members.has(id)))];
}

async function sendFrom(input: HTMLTextAreaElement, parentId?: string): Promise<void> {
  const text = input.value.trim();
  if (!active || (!text && !pendingUpload)) return;
  const attachmentIds = !parentId && pendingUpload ? [pendingUpload.id] : undefined;
  input.value = "";
  if (attachmentIds) {
    pendingUpload = null;
    $("#upload-status").textContent = "";
  }
  stream.send({ type: "typing.stop", channel_id: active });
  const sent = await chat.send(active, { text, parentId, attachmentIds, mentions: mentionsIn(text) });
  upsertMessage(sent);
}

// ---- live events ------------------------------------------------------------------------------

function connect(): void {
  stream = chat.connect();
  stream.on("connection.changed", (event) => {
    const status = $("[data-testid=connection-status]");
    status.textContent = event.state;
    status.dataset.state = event.state;
  });
  // Presence: `presence.changed` says when someone comes or goes; someone who types or posts
  // is online too (they may have connected before sharing a channel with us).
  const seen = (user: string) => {
    if (user !== userId && !online.has(user)) {
      online.add(user);
      renderHeader();
    }
  };
  stream.on("message.new", (event) => {
    const message = event.message;
    seen(message.user_id);
    const channel = channels.get(message.channel_id);
    if (!channel) {
      void loadChannels();
      return;
    }
    if (message.parent_id === null) {
      channel.last_message = message;
      channel.last_message_at = message.created_at;
      moveToTop(message.channel_id);
      if (message.channel_id === active) void chat.markRead(message.channel_id);
      else if (message.user_id !== userId) channel.unread_count = (channel.unread_count ?? 0) + 1;
    }
    const timer = typingUsers.get(message.user_id);
    if (timer !== undefined && message.channel_id === active) {
      clearTimeout(timer);
      typingUsers.delete(message.user_id);
      renderTyping();
    }
    renderChannels();
    upsertMessage(message, true);
  });
  for (const type of ["message.updated", "message.deleted", "reaction.new", "reaction.deleted"] as const) {
    stream.on(type, (event) => upsertMessage(event.message, true));
  }
  stream.on("channel.created", () => void loadChannels());
  stream.on("member.added", () => void loadChannels());
  stream.on("read.updated", (event) => {
    const channel = channels.get(event.channel_id);
    if (channel && event.user_id === userId) {
      channel.unread_count = event.unread_count;
      renderChannels();
    }
  });
  stream.on("typing.start", (event) => {
    seen(event.user_id);
    if (event.channel_id !== active || event.user_id === userId) return;
    clearTimeout(typingUsers.get(event.user_id));
    typingUsers.set(event.user_id, setTimeout(() => {
      typingUsers.delete(event.user_id);
      renderTyping();
    }, 8000));
    renderTyping();
  });
  stream.on("typing.stop", (event) => {
    clearTimeout(typingUsers.get(event.user_id));
    typingUsers.delete(event.user_id);
    renderTyping();
  });
  stream.on("presence.changed", (event) => {
    if (event.online) online.add(event.user_id);
    else online.delete(event.user_id);
    renderHeader();
  });
  stream.on("resync.required", () => {
    void loadChannels().then(() => (active ? openChannel(active) : undefined));
  });
  stream.onError((error) => {
    $("[data-testid=connection-status]").textContent = `disconnected: ${error.message}`;
  });
}

// ---- wiring -----------------------------------------------------------------------------------

function wire(): void {
  const composer = $<HTMLTextAreaElement>("[data-testid=composer]");
  let lastTyping = 0;
  composer.addEventListener("input", () => {
    if (!active) return;
    if (composer.value.trim() === "") {
      stream.send({ type: "typing.stop", channel_id: active });
      lastTyping = 0;
    } else if (Date.now() - lastTyping > 2000) {
      lastTyping = Date.now();
      stream.send({ type: "typing.start", channel_id: active });
    }
  });
  composer.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      lastTyping = 0;
      void sendFrom(composer);
    }
  });
  $("[data-testid=send]").addEventListener("click", () => {
    lastTyping = 0;
    void sendFrom(composer);
  });
  const threadComposer = $<HTMLTextAreaElement>("[data-testid=thread-composer]");
  $("[data-testid=thread-send]").addEventListener("click", () => void sendFrom(threadComposer, thread?.id));
  $("#thread-close").addEventListener("click", () => {
    thread = null;
    $("#thread").hidden = true;
  });
  $<HTMLInputElement>("[data-testid=file-input]").addEventListener("change", (event) => {
    const input = event.target as HTMLInputElement;
    const file = input.files?.[0];
    if (!file || !active) return;
    const status = $("#upload-status");
    const bar = el("progress", { max: "100", value: "0", "data-testid": "upload-progress" });
    status.replaceChildren(`${file.name} `, bar);
    void chat
      .upload(active, file, {
        filename: file.name,
        contentType: file.type || "application/octet-stream",
        onProgress: ({ loaded, total }) => (bar.value = total ? Math.round((loaded / total) * 100) : 100),
      })
      .then(
        (uploaded) => {
          pendingUpload = { id: uploaded.id, filename: uploaded.filename };
          status.replaceChildren(el("span", { "data-testid": "upload-ready" }, `${uploaded.filename} ready: press send`));
        },
        (error: unknown) => status.replaceChildren(`upload failed: ${error instanceof CariosanError ? error.message : String(error)}`),
      );
    input.value = "";
  });
  $<HTMLFormElement>("[data-testid=new-channel]").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target as HTMLFormElement;
    const data = new FormData(form);
    const members = String(data.get("members") ?? "").split(/[\s,]+/).filter(Boolean);
    const name = String(data.get("name") ?? "").trim();
    const all = [...new Set([userId, ...members])];
    void chat
      .createChannel({ type: all.length === 2 && !name ? "dm" : "group", members: all, name: name || undefined })
      .then(async (channel) => {
        form.reset();
        await loadChannels();
        await openChannel(channel.id);
      }, (error: unknown) => alert(String(error)));
  });
  const list = $("[data-testid=message-list]");
  list.addEventListener("scroll", () => {
    if (list.scrollTop < 60) void loadOlder();
  });
}

async function main(): Promise<void> {
  if (!userId) {
    $("#sign-in").hidden = false;
    $("#app").hidden = true;
    return;
  }
  $("#me").textContent = userId;
  wire();
  connect();
  await loadChannels();
  const wanted = new URLSearchParams(location.search).get("channel");
  if (wanted && channels.has(wanted)) await openChannel(wanted);
}

void main();
