"""``LeasePicker``: ask for a lease from a notebook or a Voila dashboard (ipywidgets).

The same form as the JupyterLab panel: a device selector filled from the pool, compute as a
share slider (in the device's granularity) or a profile menu, memory, TTL and priority, a
live explain preview, and your leases with a release button each::

    from flexlab.widgets import LeasePicker
    picker = LeasePicker()
    picker                      # shows the form
    picker.lease.submit(fn)     # the lease made last

The pool is found like ``%flex`` finds it (:func:`flexlab.notebook.pool_client`).
"""

from __future__ import annotations

import asyncio
import html
from typing import Any

import ipywidgets as w

from flexlab.client import Lease, PoolClient, lease
from flexlab.core.errors import FlexlabError
from flexlab.core.poolstate import MenuChoice
from flexlab.core.units import format_compute, format_memory
from flexlab.notebook import compose_request, device_choices, me, pool_client

TTLS = ("15m", "30m", "1h", "2h", "4h", "8h", "1d")


class LeasePicker(w.VBox):
    """A request form with an explain preview, and the caller's leases."""

    def __init__(
        self,
        client: Any = None,
        *,
        owner: str | None = None,
        ttl: str = "1h",
        refresh_interval: float | None = 5.0,
        **kwargs: Any,
    ) -> None:
        self.client = client if client is not None else pool_client()
        self.pool = PoolClient(self.client)
        self.owner = owner or me()  # in front mode, whom the front authenticated
        #: Leases made with this picker, the last one last.
        self.made: list[Lease] = []
        self._choices: tuple[MenuChoice, ...] = ()

        self.device = w.Dropdown(description="Device")
        self.mode = w.ToggleButtons(
            options=[("Share", "share"), ("Profile", "profile")], description="Slicing"
        )
        self.compute = w.IntSlider(value=25, min=1, max=100, step=1, description="Compute %")
        self.profile = w.Dropdown(description="Profile")
        self.memory = w.BoundedFloatText(value=0, min=0, max=1024, step=1, description="Memory GiB")
        self.ttl = w.Dropdown(options=list(dict.fromkeys([ttl, *TTLS])), value=ttl, description="TTL")
        self.priority = w.BoundedIntText(value=0, min=-1000, max=1000, description="Priority")
        self.request_text = w.HTML()
        self.preview = w.HTML()
        self.submit = w.Button(description="Request lease", button_style="primary", icon="check")
        self.message = w.HTML()
        self.leases_box = w.VBox()
        for control in (self.device, self.mode, self.compute, self.profile, self.memory):
            control.observe(self._changed, names="value")
        self.device.observe(self._device_changed, names="value")
        self.submit.on_click(lambda _: self.commit())
        self.refresh_button = w.Button(description="Refresh", icon="refresh", layout=w.Layout(width="100px"))
        self.refresh_button.on_click(lambda _: self.refresh())
        self.refresh_interval = refresh_interval
        self._timer: asyncio.TimerHandle | None = None
        super().__init__(
            [
                w.HTML("<b>Request a slice</b>"),
                self.device,
                self.mode,
                self.compute,
                self.profile,
                self.memory,
                w.HBox([self.ttl, self.priority]),
                self.request_text,
                self.preview,
                w.HBox([self.submit, self.message]),
                w.HBox([w.HTML("<b>My leases</b>"), self.refresh_button]),
                self.leases_box,
            ],
            **kwargs,
        )
        self.refresh()
        self._schedule()

    # ------------------------------------------------------------------ reading
    @property
    def lease(self) -> Lease | None:
        """The lease made last with this picker."""
        return self.made[-1] if self.made else None

    @property
    def request(self) -> str:
        """The request string of the form's values (``npu:25%``, ``a100-80gb:1g.10gb``)."""
        if self.mode.value == "profile" and self.profile.value:
            return compose_request(str(self.device.value), profile=str(self.profile.value))
        memory = float(self.memory.value or 0)
        return compose_request(
            str(self.device.value), compute=f"{self.compute.value}%", memory=memory if memory > 0 else None
        )

    def refresh(self) -> None:
        """Read the pool again: device choices, the preview and the leases."""
        choices = device_choices(self.pool.pool_state())
        if [c.value for c in choices] != [c.value for c in self._choices]:
            self._choices = choices
            current = self.device.value
            self.device.options = [(c.label, c.value) for c in choices]
            values = [c.value for c in choices]
            self.device.value = current if current in values else ("npu" if "npu" in values else "any")
            self._device_changed()
        self._changed()
        self._render_leases()

    def close(self) -> None:
        """Stop refreshing and close the widgets."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.refresh_interval = None
        super().close()

    def _schedule(self) -> None:
        """Refresh the leases every ``refresh_interval`` seconds on the kernel's event loop."""
        if not self.refresh_interval:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            try:
                loop = asyncio.get_event_loop_policy().get_event_loop()
            except RuntimeError:
                return
        if not loop.is_running():
            return  # a plain script: refresh() by hand
        self._timer = loop.call_later(self.refresh_interval, self._tick)

    def _tick(self) -> None:
        try:
            self._render_leases()
        except (FlexlabError, OSError) as exc:  # the pool went away: say so, keep trying
            self.message.value = f"<span style='color: var(--jp-warn-color1)'>{html.escape(str(exc))}</span>"
        self._schedule()

    # ------------------------------------------------------------------ acting
    def commit(self) -> Lease | None:
        """Ask for the lease the form describes."""
        try:
            made = lease(
                self.request,
                ttl=str(self.ttl.value),
                priority=int(self.priority.value),
                owner=self.owner,
                client=self.client,
                wait=False,
            )
        except FlexlabError as exc:
            self.message.value = f"<span style='color: var(--jp-error-color1)'>{html.escape(str(exc))}</span>"
            return None
        self.made.append(made)
        self.message.value = f"lease <b>{html.escape(made.lease_id)}</b>: {html.escape(made.state)}"
        self.refresh()
        return made

    def release(self, lease_id: str) -> None:
        Lease.attach(lease_id, owner=self.owner, client=self.client).release()
        self.message.value = f"released <b>{html.escape(lease_id)}</b>"
        self.refresh()

    # ------------------------------------------------------------------ the form
    def _choice(self) -> MenuChoice | None:
        return next((c for c in self._choices if c.value == self.device.value), None)

    def _device_changed(self, *_: Any) -> None:
        choice = self._choice()
        if choice is None:
            return
        step = max(1, choice.share_step_milli // 10)
        self.compute.step = step
        self.compute.min = step
        self.compute.value = max(step, round(self.compute.value / step) * step)
        self.profile.options = list(choice.profiles)
        modes = [m for m, ok in (("share", choice.share), ("profile", bool(choice.profiles))) if ok]
        self.mode.options = [(m.capitalize(), m) for m in modes]
        self.mode.layout.display = None if len(modes) > 1 else "none"
        self.mode.value = modes[0]
        self._changed()

    def _changed(self, *_: Any) -> None:
        profile = self.mode.value == "profile"
        self.compute.layout.display = "none" if profile else None
        self.memory.layout.display = "none" if profile else None
        self.profile.layout.display = None if profile else "none"
        spec = self.request
        self.request_text.value = f"Request: <code>{html.escape(spec)}</code>"
        try:
            e = self.pool.explain(spec, lease=True)
        except FlexlabError as exc:
            self.preview.value = (
                f"<span style='color: var(--jp-error-color1)'>✕ {html.escape(str(exc))}</span>"
            )
            self.submit.disabled = True
            return
        w_ = e.get("where")
        if e["code"] == "SUCCESS" and w_:
            shape = w_.get("profile") or (
                f"{format_compute(w_['compute_milli'][0])} and {format_memory(w_['memory_mib'][0])}"
            )
            text = f"✓ would land on {html.escape(', '.join(w_['devices']))} as {html.escape(shape)}"
        else:
            lead = (
                "can never fit this pool"
                if e["code"] == "UNRESOLVABLE"
                else "no room now; the lease would wait"
            )
            text = f"✕ {lead}<pre>{html.escape(e['text'])}</pre>"
        self.preview.value = text
        self.submit.disabled = e["code"] == "UNRESOLVABLE"

    def _render_leases(self) -> None:
        rows = []
        for x in self.pool.lease_views(owner=self.owner):
            if not x.live:
                continue
            where_ = ", ".join(x.devices) or x.reason
            ttl = int(x.ttl_left_s)
            label = w.HTML(
                f"<b>{html.escape(x.lease_id)}</b> {html.escape(x.state)} · "
                f"<code>{html.escape(x.request)}</code> · {html.escape(where_)} {html.escape(x.shape)} · "
                f"{ttl // 3600}h{ttl % 3600 // 60:02d}m left · util {x.utilisation:.0%}"
            )
            button = w.Button(description="Release", button_style="danger", layout=w.Layout(width="90px"))
            button.on_click(lambda _, lid=x.lease_id: self.release(lid))
            rows.append(w.HBox([button, label]))
        self.leases_box.children = rows or [w.HTML(f"<i>No leases of {html.escape(self.owner)}.</i>")]
