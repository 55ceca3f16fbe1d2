"""chestlab dashboard: train a CHEST model live and watch hyperbolic metric learning react to every slider.

Run with ``make app`` (or ``streamlit run app.py``, or ``python app.py``). The page only *drives*
:class:`chestlab.engine.Trainer` (the one training engine) and draws with :mod:`chestlab.viz`
(the same figures as the notebooks); it lives in the package :mod:`chestlab.dashboard` (state,
schema-generated controls, runner, one module per panel).

This file plays two parts:

* ``streamlit run app.py`` finds the ``st.App`` below and imports this file once as the server's
  app: its lifespan starts the warm-up (torch, the engine, plotly and one default run, in the
  background), so the first page opened draws its first plot without importing them, and its
  middleware (:class:`chestlab.dashboard.assets.IndexPreload`) makes the browser fetch the first
  frame's JavaScript as soon as the page's HTML arrives;
* every browser session then runs this file as its page script (so does ``AppTest.from_file``):
  it waits for the warm-up's imports if they are still running, and draws the page.

A link reopens an experiment: every setting is a query parameter (``?c=0.1&delta_h=5&preset=H+only&play=1``).
"""

from __future__ import annotations

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

if get_script_run_ctx(suppress_warning=True) is not None or not hasattr(st, "App"):
    # a browser session (or AppTest) runs this file: the page
    from chestlab.dashboard import PAGE_CONFIG, warm

    st.set_page_config(**PAGE_CONFIG)
    if warm.is_ready():
        warm.wait()  # returns at once; stops what is left of the warm-up (this page warms itself up)
    else:
        with st.spinner("Starting the training engine (the server has just started) …"):
            warm.wait()
    from chestlab.dashboard.page import main

    main()
else:
    # `streamlit run app.py` (or uvicorn) imports this file once: the server, warmed up at start
    from starlette.middleware import Middleware

    from chestlab.dashboard import first
    from chestlab.dashboard.assets import IndexPreload
    from chestlab.dashboard.warm import lifespan

    # IndexPreload: the page's HTML asks for the first frame's JavaScript (plotly's 4.7 MB chunk,
    # the widgets') at once, instead of when the first element of each kind arrives; first.routes():
    # the browser says when it has drawn the first chart (the rest of the first frame goes out then)
    app = st.App(__file__, lifespan=lifespan, middleware=[Middleware(IndexPreload)], routes=first.routes())

    if __name__ == "__main__":  # python app.py
        app.run()
