"""The browser's early start: the page's HTML asks for the JavaScript of the first frame at once.

Streamlit's frontend loads most of its element code lazily: the plotly chunk (``PlotlyChart.<hash>.js``,
4.7 MB), the ``st.html`` element's code (with its sanitiser), the metrics, buttons, sliders, … are
fetched only when the first element of that kind *arrives* over the websocket, one after the other.
Measured on the 2-core demo machine (``notes/first26.md``): the page's own script opened its websocket
~1 s after the navigation, the chunks of the first frame were fetched from ~1.2 s to ~4.7 s, the plotly
chunk at 1.4–5.4 s (:func:`chestlab.dashboard.page.preload_plotly` starts it with the first element).

:class:`IndexPreload` (an ASGI middleware; ``app.py`` gives it to its ``st.App``) adds one
``<link rel="modulepreload">`` per chunk of the first frame (:func:`first_frame_chunks`) to the page's
``index.html``: the browser fetches and compiles them while Streamlit's own code starts, and a chunk is
ready when its first element arrives, and a small classic script that evaluates the plotly chunk when the
page's websocket opens (the server then works on the first frame for a second or more). Nothing else of
the page changes; static files keep Streamlit's
headers (uncompressed on purpose, ``Cache-Control: immutable``: see
``streamlit/web/server/starlette/starlette_gzip_middleware.py``).
"""

from __future__ import annotations

import glob
import os
from typing import Any, Optional

__all__ = ["plotly_chunk", "first_frame_chunks", "FIRST_FRAME", "head_html", "inject", "IndexPreload"]

#: Streamlit's lazy chunks the first frame of the page uses (file ``<name>.<hash>.js``): the plotly
#: chunk first (the largest), then the elements drawn before the first chart (the preload's ``st.html``,
#: the spinner, the controls row, the metrics) and the sidebar's widgets.
FIRST_FRAME = ("PlotlyChart", "Html", "purify.es", "rehype-raw", "Spinner", "Button", "Checkbox", "Metric", "Radio",
               "Slider", "Selectbox", "NumberInput")


def _js_dir() -> str:
    import streamlit

    return os.path.join(os.path.dirname(streamlit.__file__), "static", "static", "js")


def _chunk(name: str, folder: Optional[str] = None) -> Optional[str]:
    # "<name>.<hash>.js" exactly: "Button.*.js" must not find "BaseButton.*.js"
    found = sorted(p for p in glob.glob(os.path.join(folder or _js_dir(), f"{glob.escape(name)}.*.js"))
                   if os.path.basename(p)[len(name) + 1:].count(".") == 1)
    return os.path.basename(found[0]) if found else None


def plotly_chunk(folder: Optional[str] = None) -> Optional[str]:
    """The file name of Streamlit's frontend chunk that holds plotly.js (``PlotlyChart.<hash>.js``),
    or None when this Streamlit has none."""
    return _chunk("PlotlyChart", folder)


def first_frame_chunks(folder: Optional[str] = None) -> list[str]:
    """The chunk files of :data:`FIRST_FRAME` this Streamlit has, in that order."""
    return [c for c in (_chunk(n, folder) for n in FIRST_FRAME) if c]


#: a classic script (it runs before Streamlit's module script): when the page's websocket opens --
#: Streamlit has sent its first request, the server now runs the script for a second or more --
#: evaluate the (preloaded) plotly chunk, so that it is ready when the first chart arrives. Without
#: it the evaluation began only once the first element was drawn, ~0.4 s later under load
#: (``page.preload_plotly`` stays as the fallback; ``window.__chestlabPreload`` makes it once)
_EVAL_ON_OPEN_JS = """<script>(function(){var W=window.WebSocket, u=%s; if(!W||!u) return;
function go(){if(window.__chestlabPreload) return; window.__chestlabPreload=performance.now();
 import(u).then(function(){window.__chestlabPreloaded=performance.now();}).catch(function(e){console.warn('chestlab preload',e);});}
function S(a,b){var s=(b===undefined)?new W(a):new W(a,b); s.addEventListener('open',function(){setTimeout(go,0);}); return s;}
S.prototype=W.prototype; ['CONNECTING','OPEN','CLOSING','CLOSED'].forEach(function(k){S[k]=W[k];}); window.WebSocket=S;})();</script>"""


def head_html(chunks: Optional[list[str]] = None) -> str:
    """The ``<link rel="modulepreload">`` lines for ``chunks`` (default :func:`first_frame_chunks`),
    relative to the page as Streamlit's own links are (a server path prefix is kept), and, when the
    plotly chunk is one of them, the script that evaluates it when the websocket opens."""
    import json

    chunks = first_frame_chunks() if chunks is None else chunks
    links = "".join(f'<link rel="modulepreload" crossorigin href="./static/js/{c}">' for c in chunks)
    plotly = next((c for c in chunks if c.startswith("PlotlyChart.")), None)
    return links + (_EVAL_ON_OPEN_JS % json.dumps(f"./static/js/{plotly}") if plotly else "")


def inject(html: bytes, head: str) -> bytes:
    """``html`` with ``head`` just before ``</head>``; unchanged when it has no ``</head>`` or has
    ``head`` already."""
    mark = b"</head>"
    extra = head.encode()
    i = html.find(mark)
    if i < 0 or not extra or extra in html:
        return html
    return html[:i] + extra + html[i:]


class IndexPreload:
    """ASGI middleware: the page's ``index.html`` (a GET of a path ending in ``/`` or ``index.html``
    that answers uncompressed HTML) gets :func:`head_html`; every other response passes untouched."""

    def __init__(self, app: Any, head: Optional[str] = None) -> None:
        self.app = app
        self.head = head_html() if head is None else head

    @staticmethod
    def _is_page(scope: dict) -> bool:
        path = scope.get("path", "")
        return scope.get("type") == "http" and scope.get("method") == "GET" and (path.endswith("/") or path.endswith("/index.html"))

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if not self.head or not self._is_page(scope):
            await self.app(scope, receive, send)
            return
        start: dict = {}
        body: list[bytes] = []
        passing = False

        async def send_wrapper(message: dict) -> None:
            nonlocal passing
            if passing:
                await send(message)
                return
            if message["type"] == "http.response.start":
                headers = {k.lower(): v for k, v in message.get("headers", [])}
                html = headers.get(b"content-type", b"").startswith(b"text/html")
                if not html or b"content-encoding" in headers or message.get("status", 200) != 200:
                    passing = True
                    await send(message)
                    return
                start.update(message)
                return
            if message["type"] == "http.response.body":
                body.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                new = inject(b"".join(body), self.head)
                headers = [(k, str(len(new)).encode() if k.lower() == b"content-length" else v)
                           for k, v in start.get("headers", [])]
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": new, "more_body": False})
                return
            await send(message)

        await self.app(scope, receive, send_wrapper)
