// A small Markdown renderer that builds DOM nodes (never HTML strings), so model output can
// hold "<script>" or any markup and it only ever shows up as text. Supports fenced code
// blocks, headings, block quotes, lists, paragraphs, inline code, bold, italic and links
// (http, https and mailto only).

function inline(parent, text) {
  // tokens: `code`, **bold**, *italic* / _italic_, [text](url)
  const re = /(`+)([\s\S]*?)\1|\*\*([^*]+)\*\*|__([^_]+)__|\*([^*\s][^*]*)\*|_([^_\s][^_]*)_|\[([^\]]+)\]\(([^)\s]+)\)/g;
  let last = 0;
  let m;
  while ((m = re.exec(text))) {
    if (m.index > last) parent.appendChild(document.createTextNode(text.slice(last, m.index)));
    if (m[1]) {
      const c = document.createElement("code");
      c.textContent = m[2];
      parent.appendChild(c);
    } else if (m[3] || m[4]) {
      const b = document.createElement("strong");
      inline(b, m[3] || m[4]);
      parent.appendChild(b);
    } else if (m[5] || m[6]) {
      const i = document.createElement("em");
      inline(i, m[5] || m[6]);
      parent.appendChild(i);
    } else {
      let url = null;
      try {
        const u = new URL(m[8], location.href);
        if (["http:", "https:", "mailto:"].includes(u.protocol)) url = u.href;
      } catch {}
      if (url) {
        const a = document.createElement("a");
        a.href = url;
        a.rel = "noopener noreferrer nofollow";
        a.target = "_blank";
        inline(a, m[7]);
        parent.appendChild(a);
      } else {
        parent.appendChild(document.createTextNode(m[0]));
      }
    }
    last = re.lastIndex;
  }
  if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
}

function withBreaks(parent, lines) {
  lines.forEach((l, i) => {
    if (i) parent.appendChild(document.createElement("br"));
    inline(parent, l);
  });
}

/** Render markdown text into a DocumentFragment. */
export function renderMarkdown(src) {
  const frag = document.createDocumentFragment();
  const lines = src.replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = /^\s*(```+|~~~+)\s*([\w+-]*)/.exec(line);
    if (fence) {
      const body = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) body.push(lines[i++]);
      i++; // closing fence (or end of text while streaming)
      const pre = document.createElement("pre");
      const code = document.createElement("code");
      if (fence[2]) code.dataset.lang = fence[2];
      code.textContent = body.join("\n");
      pre.appendChild(code);
      frag.appendChild(pre);
      continue;
    }
    if (!line.trim()) {
      i++;
      continue;
    }
    const h = /^(#{1,6})\s+(.*)$/.exec(line);
    if (h) {
      const el = document.createElement("h" + Math.min(6, h[1].length + 2));
      inline(el, h[2]);
      frag.appendChild(el);
      i++;
      continue;
    }
    if (/^\s*>/.test(line)) {
      const q = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) q.push(lines[i++].replace(/^\s*>\s?/, ""));
      const bq = document.createElement("blockquote");
      bq.appendChild(renderMarkdown(q.join("\n")));
      frag.appendChild(bq);
      continue;
    }
    const li = /^\s*([-*+]|\d+[.)])\s+/;
    if (li.test(line)) {
      const ordered = /^\s*\d/.test(line);
      const list = document.createElement(ordered ? "ol" : "ul");
      while (i < lines.length && li.test(lines[i])) {
        const item = document.createElement("li");
        inline(item, lines[i].replace(li, ""));
        list.appendChild(item);
        i++;
      }
      frag.appendChild(list);
      continue;
    }
    const para = [];
    while (i < lines.length && lines[i].trim() && !/^\s*(```|~~~|#{1,6}\s|>)/.test(lines[i]) && !(para.length && li.test(lines[i])))
      para.push(lines[i++]);
    const p = document.createElement("p");
    withBreaks(p, para);
    frag.appendChild(p);
  }
  return frag;
}
