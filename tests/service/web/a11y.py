"""An accessibility pass and screenshots for the pages, in the browser, without network.

`check(page)` asserts what a person using a screen reader, a keyboard or weak
eyes needs from a server-rendered page: `lang` set; every form control labelled;
every image and inline SVG named or hidden from assistive technology; every link
and button named; headings that start at one h1 and skip no level; text contrast
of at least 4.5:1 (WCAG 2 relative luminance, from the computed styles, over
the nearest opaque background); and keyboard use: Tab reaches every link, button
and control in document order, the focused one shows a visible outline, and no
region scrolls where a keyboard cannot reach it.

Written here rather than loading axe-core: these checks are the ones the pages
need, they run on the page Playwright already has without installing or vendoring
an npm package, and a failure names the element in a line a reader understands.

`screenshot(page, name)` writes `out/screenshots/<name>.png` under the repository
(git-ignored), which CI keeps as an artifact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
SHOTS = ROOT / "out" / "screenshots"
MIN_CONTRAST = 4.5

# Run in the page; returns a list of problems, each a readable line.
_STATIC = r"""
() => {
  const problems = [];
  const describe = (el) => {
    let s = el.tagName.toLowerCase();
    if (el.id) s += "#" + el.id;
    const text = (el.textContent || "").trim().replace(/\s+/g, " ").slice(0, 40);
    return text ? `${s} "${text}"` : s;
  };
  const visible = (el) => {
    const style = getComputedStyle(el);
    const box = el.getBoundingClientRect();
    return style.visibility !== "hidden" && style.display !== "none"
      && box.width > 0 && box.height > 0;
  };
  const hidden = (el) => !!el.closest("[aria-hidden=true]");
  const byIds = (ids) => ids.split(/\s+/).map((i) => document.getElementById(i))
    .filter(Boolean).map((e) => e.textContent.trim()).join(" ").trim();
  const nameOf = (el) => {
    if (el.getAttribute("aria-label")?.trim()) return el.getAttribute("aria-label").trim();
    if (el.getAttribute("aria-labelledby")) {
      const t = byIds(el.getAttribute("aria-labelledby"));
      if (t) return t;
    }
    const imgs = [...el.querySelectorAll("img[alt]")].map((i) => i.alt.trim()).join(" ");
    const text = ((el.innerText || el.textContent || "") + " " + imgs).trim();
    if (text) return text;
    if (el.labels && [...el.labels].some((l) => l.textContent.trim())) return "label";
    return (el.getAttribute("title") || el.value || "").trim();
  };

  const lang = document.documentElement.getAttribute("lang");
  if (!lang || !lang.trim()) problems.push("html has no lang attribute");
  if (!document.title.trim()) problems.push("the page has no title");

  for (const el of document.querySelectorAll("input, select, textarea")) {
    if (el.type === "hidden" || hidden(el)) continue;
    const labelled = (el.labels && [...el.labels].some((l) => l.textContent.trim()))
      || el.getAttribute("aria-label")?.trim() || (el.getAttribute("aria-labelledby")
      && byIds(el.getAttribute("aria-labelledby"))) || el.getAttribute("title")?.trim();
    if (!labelled) problems.push(`form control without a label: ${describe(el)}`);
  }
  for (const el of document.querySelectorAll("img")) {
    if (hidden(el)) continue;
    if (!el.hasAttribute("alt") && !el.getAttribute("aria-label"))
      problems.push(`img without alt: ${el.getAttribute("src")}`);
  }
  for (const el of document.querySelectorAll("svg")) {
    if (hidden(el) || el.parentElement.closest("svg")) continue;
    const title = el.querySelector(":scope > title")?.textContent.trim();
    const named = el.getAttribute("aria-label")?.trim() || title
      || (el.getAttribute("aria-labelledby") && byIds(el.getAttribute("aria-labelledby")));
    if (!named) problems.push(`svg with no accessible name (aria-label, <title>) nor aria-hidden`);
  }
  for (const el of document.querySelectorAll("a[href], button, [role=button], [role=link]")) {
    if (hidden(el)) continue;
    if (!nameOf(el))
      problems.push(`${el.tagName.toLowerCase()} without a name: ${el.outerHTML.slice(0, 80)}`);
  }
  const headings = [...document.querySelectorAll("h1, h2, h3, h4, h5, h6")];
  if (!headings.length || headings[0].tagName !== "H1")
    problems.push("the first heading is not an h1");
  if (headings.filter((h) => h.tagName === "H1").length > 1) problems.push("more than one h1");
  let level = 0;
  for (const h of headings) {
    const next = Number(h.tagName[1]);
    if (level && next > level + 1)
      problems.push(`heading skips a level: h${level} then ${describe(h)}`);
    level = next;
  }

  // a region that scrolls must be reachable by keyboard to be scrolled without a mouse
  for (const el of document.body.querySelectorAll("*")) {
    const style = getComputedStyle(el);
    const scrolls = (el.scrollWidth > el.clientWidth && /auto|scroll/.test(style.overflowX))
      || (el.scrollHeight > el.clientHeight && /auto|scroll/.test(style.overflowY));
    if (scrolls && el.tabIndex < 0 && !el.querySelector("a[href], button, input, select, textarea"))
      problems.push(`scrollable region a keyboard cannot reach: ${describe(el)}`);
  }

  // contrast: each visible element with text of its own, over its nearest opaque background
  const rgba = (s) => {
    const m = s.match(/rgba?\(([^)]+)\)/);
    if (!m) return [0, 0, 0, 1];
    const p = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map((v) => {
      v /= 255;
      return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const over = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3]));
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) layers.push(c);
      if (c[3] >= 1) break;
    }
    let colour = [255, 255, 255];  // the canvas under everything
    for (const layer of layers.reverse()) colour = over(layer, colour);
    return colour;
  };
  for (const el of document.body.querySelectorAll("*")) {
    if (["SCRIPT", "STYLE", "svg"].includes(el.tagName) || el.closest("svg")) continue;
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !visible(el)) continue;
    const style = getComputedStyle(el);
    const bg = background(el);
    const fg = over(rgba(style.color), bg);
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    if (ratio < %(min)s)
      problems.push(`contrast ${ratio.toFixed(2)}:1 under %(min)s:1: ${describe(el)}`
        + ` (${style.color} on rgb(${bg.map(Math.round)}))`);
  }
  return problems;
}
""".replace("%(min)s", str(MIN_CONTRAST))

_FOCUSABLE = r"""
() => [...document.querySelectorAll(
    "a[href], button:not([disabled]), input:not([disabled]):not([type=hidden]), "
    + "select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex='-1'])")]
  .filter((el) => el.checkVisibility({ visibilityProperty: true }))
  .map((el, i) => { el.dataset.a11yOrder = String(i); return i; }).length
"""

_FOCUSED = r"""
() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const style = getComputedStyle(el);
  const width = parseFloat(style.outlineWidth) || 0;
  return {
    order: el.dataset.a11yOrder ?? null,
    what: el.tagName.toLowerCase() + " " + (el.textContent || el.name || "").trim().slice(0, 40),
    outline: style.outlineStyle !== "none" && width > 0,
    ring: style.boxShadow !== "none",
  };
}
"""


def problems(page: Any) -> list[str]:
    """Everything the accessibility pass finds wrong with the page as it is now."""
    found: list[str] = list(page.evaluate(_STATIC))
    found.extend(keyboard_problems(page))
    return found


def keyboard_problems(page: Any) -> list[str]:
    """Tab from the top: each link, button and control in document order, each with a
    visible focus outline (or ring), and nothing else takes focus on the way."""
    count = page.evaluate(_FOCUSABLE)
    # focus a non-tabbable mark at the top, so that Tab starts from the page's beginning
    page.evaluate(
        """() => { const m = document.createElement("span"); m.id = "a11y-start";
        m.tabIndex = -1; document.body.prepend(m); m.focus(); }"""
    )
    found: list[str] = []
    for expected in range(count):
        page.keyboard.press("Tab")
        focused = page.evaluate(_FOCUSED)
        if focused is None or focused["order"] != str(expected):
            got = focused["what"] if focused else "nothing"
            found.append(f"Tab {expected + 1}: expected element {expected} in order, got {got}")
            break
        if not (focused["outline"] or focused["ring"]):
            found.append(f"focus is not visible on {focused['what']}")
    page.evaluate("() => document.getElementById('a11y-start')?.remove()")
    return found


def check(page: Any) -> None:
    """Assert the page passes the accessibility pass, listing every problem if not."""
    found = problems(page)
    assert not found, f"accessibility problems on {page.url}:\n" + "\n".join(found)


def screenshot(page: Any, name: str) -> Path:
    """Write the whole page to out/screenshots/`name`.png (kept by CI); return the path."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("() => document.activeElement?.blur()")  # no leftover focus ring from check
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
