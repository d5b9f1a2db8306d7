"""The shock control: a form in the browser whose Apply button sends the form's
values with the click.

Why not separate Solara inputs and a button: the browser syncs an input's value
and a button's click as separate messages, and while the model plays (the
server busy drawing frames) a click can overtake the value typed just before
it; a redraw can also put an input's older value back. Here the click carries
the kind, size, bank and asset class the form shows at that moment, so what is
applied is what the form shows, playing or not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import ipyvuetify as v
import solara
import traitlets

from finsim_mesa.scenarios.engine import SHOCK_KINDS
from finsim_mesa.viz.describe import SHOCK_WORDS
from finsim_mesa.viz.frames import Frame
from finsim_mesa.viz.session import Session

__all__ = ["ALL_CLASSES", "ShockControl", "ShockForm", "read_form"]

ALL_CLASSES = "all asset classes"

TEMPLATE = r"""
<template>
  <div class="finsim-shock">
    <v-select label="Shock" :items="kinds" v-model="kind" hide-details class="mb-3"></v-select>
    <v-slider v-if="kind !== 'default'" v-model="size" :label="sizeLabel" :min="0.05"
              :max="kind === 'price_crash' ? 0.9 : 1.0" :step="0.05" hide-details
              class="mb-2"></v-slider>
    <v-select v-if="kind === 'price_crash' && assets.length > 1" label="Asset class"
              :items="assetItems" v-model="asset" hide-details class="mb-2"></v-select>
    <v-text-field label="Bank (click one in the network)" v-model="bank"
                  :disabled="kind === 'price_crash'" hide-details class="mb-3"></v-text-field>
    <v-btn color="warning" block @click="send">Apply shock</v-btn>
  </div>
</template>
<script>
module.exports = {
  computed: {
    sizeLabel() {
      const of = {price_crash: 'of the price', funding_withdrawal: 'of deposits',
                  loss: 'of equity'}[this.kind] || '';
      return `Size: ${Math.round(this.size * 100)}% ${of}`;
    },
    assetItems() { return [this.all_classes, ...this.assets]; },
  },
  methods: {
    send() {  // what the form shows now, in the click itself
      this.apply({kind: this.kind, size: this.size, bank: this.bank, asset: this.asset});
    },
  },
};
</script>
"""


class ShockForm(v.VuetifyTemplate):
    """The widget; ``on_apply`` gets ``{kind, size, bank, asset}`` as the browser
    showed them when Apply was clicked."""

    template = traitlets.Unicode(TEMPLATE).tag(sync=True)
    kinds = traitlets.List().tag(sync=True)     # [{"text": words, "value": kind}]
    kind = traitlets.Unicode("price_crash").tag(sync=True)
    size = traitlets.Float(0.2).tag(sync=True)
    bank = traitlets.Unicode("0").tag(sync=True)
    assets = traitlets.List().tag(sync=True)
    asset = traitlets.Unicode(ALL_CLASSES).tag(sync=True)
    all_classes = traitlets.Unicode(ALL_CLASSES).tag(sync=True)
    on_apply = traitlets.Callable(None, allow_none=True)

    def vue_apply(self, form: dict[str, Any]) -> None:
        """Called by the browser's Apply button with the form's values."""
        if self.on_apply is not None:
            self.on_apply(form)


def read_form(form: dict[str, Any], names: Sequence[str]
              ) -> tuple[str, float, int | None, str | None] | str:
    """``(kind, size, bank, asset)`` from the browser's form, or a message saying
    what is wrong with it."""
    kind = form.get("kind")
    if kind not in SHOCK_KINDS:
        return f"Shock refused: unknown kind {kind!r}"
    try:
        size = float(form.get("size", 0.0))
    except (TypeError, ValueError):
        return f"Shock refused: size {form.get('size')!r} is not a number"
    bank = None
    if kind != "price_crash":
        text = str(form.get("bank", "")).strip()
        if not text.lstrip("-").isdigit():
            return f"Shock refused: bank {text!r} is not a bank number (0, 1, 2, ...)"
        bank = int(text)
    asset = form.get("asset")
    asset = asset if kind == "price_crash" and asset in names else None
    return kind, 0.0 if kind == "default" else size, bank, asset


@solara.component
def ShockControl(session: Session, frame: solara.Reactive[Frame],
                 selected: solara.Reactive[int]) -> Any:
    """Apply a shock now to the running model(s); the bank field follows the bank
    selected in the network, and typing a bank selects it."""
    names = list(session.models[0].market.names)

    def apply(form: dict[str, Any]) -> None:
        parsed = read_form(form, names)
        if isinstance(parsed, str):
            frame.set(session.frame(parsed))
            return
        kind, size, bank, asset = parsed
        if bank is not None:
            selected.set(bank)
        with session.lock:  # a frame the player publishes next is newer: it stays shown
            frame.set(session.shock(kind, size, bank, asset))

    kinds = [{"text": SHOCK_WORDS[k][0], "value": k} for k in SHOCK_KINDS]
    with solara.Card("Shock", margin=0, style="margin-bottom: 8px"):
        el = ShockForm.element(kinds=kinds, assets=names if len(names) > 1 else [],
                               on_apply=apply)
        ShockStatus(frame)

    widget_ref = solara.use_ref(None)

    def follow_typing() -> Callable[[], None]:  # a typed bank selects it
        widget = widget_ref.current = solara.get_widget(el)

        def on_bank(change: dict[str, Any]) -> None:
            text = str(change["new"]).strip()
            if text.isdigit() and int(text) != selected.value:
                selected.set(int(text))

        widget.observe(on_bank, "bank")
        return lambda: widget.unobserve(on_bank, "bank")

    def show_selected() -> None:  # a click in the network fills the field
        widget = widget_ref.current
        if widget is not None and widget.bank != str(selected.value):
            widget.bank = str(selected.value)

    solara.use_effect(follow_typing, [])
    solara.use_effect(show_selected, [selected.value])


@solara.component
def ShockStatus(frame: solara.Reactive[Frame]) -> Any:
    """What the last shock did (or why it was refused)."""
    message = frame.value.message
    if message:
        solara.Text(message, classes=["finsim-status"], style="font-size: 15px")
