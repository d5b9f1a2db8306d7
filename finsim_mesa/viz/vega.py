"""A Vega-Lite chart drawn in the browser that takes new data without a redraw
from scratch.

Solara's own ``FigureAltair`` re-embeds the whole chart whenever its spec
changes (and waits 100 ms first). :class:`LiveVega` embeds the spec once and,
when the data change, hands each *changed* dataset to the Vega view
(``view.data(name, rows)``) and lets Vega's dataflow redraw what depends on
it. Data go over as JSON strings (one per dataset) so that the browser
compares them cheaply and Vue does not watch thousands of objects. After each
redraw the chart's element carries ``data-stamp`` = the stamp of the data it
shows (what the browser tests wait for).

Clicking a mark sends its datum to ``on_click``. Tooltips come from the spec's
``tooltip`` encodings (vega-embed's tooltip handler, fonts enlarged for a
projector).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import ipyvuetify as v
import solara
import traitlets

__all__ = ["LiveVega", "VegaChart"]

TEMPLATE = r"""
<template>
  <div class="finsim-vega" :data-title="title"><div ref="plot"></div></div>
</template>
<script>
module.exports = {
  mounted() {
    this.applied = {};
    this.ready = this.loadVega().then(() => this.embed());
  },
  destroyed() {
    this.dead = true;
    if (this.view) { this.view.finalize(); this.view = null; }
  },
  watch: {
    spec() { this.ready = this.ready.then(() => this.embed()); },
    datasets() { this.push(); },
  },
  methods: {
    embed() {
      return new Promise((resolve) => {
        require(['vega-embed'], (vegaEmbed) => {
          if (this.dead) { resolve(); return; }
          if (this.view) { this.view.finalize(); this.view = null; }
          // the first drawing already has the data (no empty axes first)
          const spec = JSON.parse(this.spec), sets = this.datasets || {};
          this.applied = {};
          spec.datasets = {};
          for (const name in sets) {
            if (name === '__stamp') { continue; }
            spec.datasets[name] = JSON.parse(sets[name]);
            this.applied[name] = sets[name];
          }
          const opts = {renderer: 'svg', actions: false, tooltip: {theme: 'light'}};
          vegaEmbed(this.$refs.plot, spec, opts).then((res) => {
            this.view = res.view;
            this.view.addEventListener('click', (event, item) => {
              const d = item && item.datum;
              if (d && (d.id !== undefined || d.kind !== undefined)) {
                this.vega_click({id: d.id === undefined ? null : d.id,
                                 kind: d.kind === undefined ? null : d.kind});
              }
            });
            this.busy = false;
            this.push();
            resolve();
          }).catch((e) => { console.error('finsim vega embed', e); resolve(); });
        });
      });
    },
    push() {
      if (!this.view || this.dead) { return; }
      if (this.busy) { this.dirty = true; return; }
      this.busy = true; this.dirty = false;
      const sets = this.datasets || {};
      let changed = false;
      for (const name in sets) {
        if (name === '__stamp') { continue; }
        if (this.applied[name] !== sets[name]) {
          this.view.data(name, JSON.parse(sets[name]));
          this.applied[name] = sets[name];
          changed = true;
        }
      }
      const stamp = sets.__stamp;
      const done = () => {
        if (this.$refs.plot) { this.$el.dataset.stamp = stamp; }
        this.busy = false;
        if (this.dirty) { this.push(); }
      };
      if (changed) {
        this.view.runAsync().then(done).catch((e) => {
          console.error('finsim vega run', e); this.busy = false; });
      } else { done(); }
    },
    loadVega() {
      return this.loadRequire().then(() => new Promise((resolve, reject) => {
        const cdn = this.getCdn();
        require.config({map: {'*': {
          'vega': `${cdn}/vega@5/build/vega.min.js`,
          'vega-lite': `${cdn}/vega-lite@5/build/vega-lite.min.js`,
          'vega-embed': `${cdn}/vega-embed@6/build/vega-embed.min.js`}}});
        require(['vega', 'vega-lite', 'vega-embed'], () => resolve(), reject);
      }));
    },
    loadRequire() {
      if (window.requirejs) { return Promise.resolve(); }
      return new Promise((resolve, reject) => {
        const script = document.createElement('script');
        script.src = `${this.getCdn()}/requirejs@2.3.6/require.js`;
        script.onload = resolve; script.onerror = reject;
        document.head.appendChild(script);
      });
    },
    getJupyterBaseUrl() {
      if (document.getElementsByTagName('base').length) { return './'; }
      const lab = document.getElementById('jupyter-config-data');
      if (lab) { return JSON.parse(lab.textContent).baseUrl; }
      let base = document.body.dataset.baseUrl || document.baseURI;
      if (!base.endsWith('/')) { base += '/'; }
      return base;
    },
    getCdn() {
      return this.cdn || (window.solara ? window.solara.cdn
                                        : `${this.getJupyterBaseUrl()}_solara/cdn`);
    },
  },
};
</script>
<style id="finsim-vega-style">
#vg-tooltip-element { font-size: 15px; line-height: 1.35; max-width: 460px; }
#vg-tooltip-element table tr td.key { color: #444; padding-right: 8px; }
.finsim-vega svg { display: block; }
.finsim-vega g[class*="nopointer"] { pointer-events: none; }
</style>
"""


class LiveVega(v.VuetifyTemplate):
    """The widget: ``spec`` (Vega-Lite JSON) and ``datasets`` (name -> JSON rows,
    plus ``__stamp``) synced to the browser; clicks come back to ``on_click``."""

    template = traitlets.Unicode(TEMPLATE).tag(sync=True)
    spec = traitlets.Unicode("{}").tag(sync=True)
    datasets = traitlets.Dict().tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)
    cdn = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    on_click = traitlets.Callable(None, allow_none=True)

    @traitlets.default("cdn")
    def _cdn(self) -> str | None:
        import solara.settings

        return None if solara.settings.assets.proxy else solara.settings.assets.cdn

    def vue_vega_click(self, datum: dict[str, Any]) -> None:
        """Called by the browser with the clicked mark's ``id`` and ``kind``."""
        if self.on_click is not None:
            self.on_click(datum)


@solara.component
def VegaChart(spec: Mapping[str, Any] | str, data: Mapping[str, str], stamp: int | str,
              title: str = "", on_click: Callable[[dict[str, Any]], None] | None = None
              ) -> Any:
    """A :class:`LiveVega` element. ``data`` maps dataset names to JSON strings of
    rows (:func:`json.dumps` of a list of dicts); ``stamp`` marks this version of
    the data; ``title`` names the chart for tests and screen readers."""
    text = spec if isinstance(spec, str) else json.dumps(spec)
    return LiveVega.element(spec=text, datasets={**data, "__stamp": str(stamp)}, title=title,
                            on_click=on_click)
