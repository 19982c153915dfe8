/**
 * The request form: device, compute (share slider or profile menu), memory, TTL, priority,
 * with a live explain preview before the user commits.
 */
import { Debouncer } from '@lumino/polling';

import { ApiError, createLease, explain } from './api';
import { h } from './dom';
import { formatShare, reasonText } from './format';
import {
  DeviceChoiceModel,
  ExplainModel,
  LeaseModel,
  PoolModel
} from './models';
import {
  IRequestValues,
  composeRequest,
  deviceChoices,
  groupHeading,
  slicingOf
} from './request';

/** TTLs offered by the form (the default TTL setting is added when missing). */
const TTLS = ['15m', '30m', '1h', '2h', '4h', '8h', '1d'];

export interface IRequestFormOptions {
  /** The TTL selected at first. */
  defaultTtl: string;
  /** Called with the new lease once the server granted (or queued) it. */
  onLeased: (lease: LeaseModel) => void;
}

/** The form's DOM and behaviour; `update(pool)` refreshes its choices and preview. */
export class RequestForm {
  readonly node: HTMLFormElement;

  constructor(private readonly options: IRequestFormOptions) {
    this._device = h('select', {
      class: 'jp-mod-styled flexlab-Form-device',
      name: 'device',
      'aria-label': 'Device'
    });
    this._modeShare = h(
      'button',
      { type: 'button', class: 'flexlab-Segment', 'data-mode': 'share' },
      'Share'
    );
    this._modeProfile = h(
      'button',
      { type: 'button', class: 'flexlab-Segment', 'data-mode': 'profile' },
      'Profile'
    );
    this._slider = h('input', {
      type: 'range',
      class: 'flexlab-Form-slider',
      name: 'compute',
      min: 100,
      max: 1000,
      step: 100,
      value: 250,
      'aria-label': 'Compute share'
    });
    this._sliderValue = h('output', { class: 'flexlab-Form-sliderValue' });
    this._profile = h('select', {
      class: 'jp-mod-styled flexlab-Form-profile',
      name: 'profile',
      'aria-label': 'Profile'
    });
    this._memory = h('input', {
      type: 'number',
      class: 'jp-mod-styled flexlab-Form-memory',
      name: 'memory',
      min: 0,
      step: 1,
      placeholder: 'auto',
      'aria-label': 'Memory in GiB'
    });
    this._ttl = h('select', {
      class: 'jp-mod-styled flexlab-Form-ttl',
      name: 'ttl',
      'aria-label': 'TTL'
    });
    this._priority = h('input', {
      type: 'number',
      class: 'jp-mod-styled flexlab-Form-priority',
      name: 'priority',
      min: -1000,
      max: 1000,
      step: 1,
      value: 0,
      'aria-label': 'Priority'
    });
    this._requestText = h('code', { class: 'flexlab-Form-request' });
    this._preview = h('div', {
      class: 'flexlab-Explain',
      'data-code': 'none',
      'aria-live': 'polite'
    });
    this._error = h('div', { class: 'flexlab-Form-error', role: 'alert' });
    this._submit = h(
      'button',
      {
        type: 'submit',
        class: 'jp-mod-styled jp-mod-accept flexlab-Form-submit'
      },
      'Request lease'
    );
    for (const ttl of this._ttlChoices()) {
      this._ttl.append(
        h('option', { value: ttl, selected: ttl === options.defaultTtl }, ttl)
      );
    }

    const row = (label: string, ...controls: HTMLElement[]): HTMLElement =>
      h(
        'label',
        { class: 'flexlab-Form-row' },
        h('span', { class: 'flexlab-Form-label' }, label),
        h('span', { class: 'flexlab-Form-controls' }, ...controls)
      );
    this._shareRow = row('Compute', this._slider, this._sliderValue);
    this._profileRow = row('Profile', this._profile);
    this._memoryRow = row(
      'Memory',
      this._memory,
      h('span', { class: 'flexlab-Form-unit' }, 'GiB')
    );
    this._modeRow = h(
      'div',
      { class: 'flexlab-Form-row' },
      h('span', { class: 'flexlab-Form-label' }, 'Slicing'),
      h(
        'span',
        { class: 'flexlab-Form-controls flexlab-Segments', role: 'group' },
        this._modeShare,
        this._modeProfile
      )
    );
    this.node = h(
      'form',
      { class: 'flexlab-Form', novalidate: true },
      row('Device', this._device),
      this._modeRow,
      this._shareRow,
      this._profileRow,
      this._memoryRow,
      row('TTL', this._ttl),
      row(
        'Priority',
        this._priority,
        h('span', { class: 'flexlab-Form-unit' }, 'higher goes first')
      ),
      h(
        'div',
        { class: 'flexlab-Form-requestLine' },
        h('span', { class: 'flexlab-Form-label' }, 'Request'),
        this._requestText
      ),
      this._preview,
      this._error,
      h('div', { class: 'flexlab-Form-actions' }, this._submit)
    );

    this._device.addEventListener('change', () => this._onDevice());
    this._modeShare.addEventListener('click', () => this._setMode('share'));
    this._modeProfile.addEventListener('click', () => this._setMode('profile'));
    for (const el of [this._slider, this._memory, this._profile]) {
      el.addEventListener('input', () => this._changed());
    }
    this._profile.addEventListener('change', () => this._changed());
    this.node.addEventListener('submit', event => {
      event.preventDefault();
      void this._commit();
    });
  }

  /** Refresh the device choices from the pool (keeping the selection) and the preview. */
  update(pool: PoolModel): void {
    const choices = deviceChoices(pool);
    const key = choices.map(c => `${c.value}:${c.devices.length}`).join('|');
    if (key !== this._choicesKey) {
      this._choicesKey = key;
      this._choices = choices;
      const selected = this._device.value || 'npu';
      this._device.textContent = '';
      const groups = new Map<string, HTMLOptGroupElement>();
      for (const c of choices) {
        let parent: HTMLElement = this._device;
        if (c.group !== 'any') {
          let g = groups.get(c.group);
          if (!g) {
            g = h('optgroup', { label: groupHeading(c.group) });
            groups.set(c.group, g);
            this._device.append(g);
          }
          parent = g;
        }
        parent.append(h('option', { value: c.value }, c.label));
      }
      this._device.value = choices.some(c => c.value === selected)
        ? selected
        : 'any';
      this._onDevice();
    } else {
      this._explainSoon.invoke();
    }
  }

  /** The request string of the current values. */
  get request(): string {
    return composeRequest(this._values());
  }

  dispose(): void {
    this._explainSoon.dispose();
  }

  private _ttlChoices(): string[] {
    const d = this.options.defaultTtl;
    return TTLS.includes(d) ? TTLS : [d, ...TTLS];
  }

  private _choice(): DeviceChoiceModel | undefined {
    return this._choices.find(c => c.value === this._device.value);
  }

  private _onDevice(): void {
    const choice = this._choice();
    if (!choice) {
      return;
    }
    const s = slicingOf(choice);
    this._slider.step = String(s.step);
    this._slider.min = String(s.step);
    const snapped = Math.max(
      s.step,
      Math.round(Number(this._slider.value) / s.step) * s.step
    );
    this._slider.value = String(Math.min(1000, snapped));
    this._memory.max = String(Math.floor(s.maxMemoryMib / 1024));
    this._profile.textContent = '';
    for (const p of s.profiles) {
      this._profile.append(h('option', { value: p }, p));
    }
    this._modeShare.disabled = !s.share;
    this._modeProfile.disabled = s.profiles.length === 0;
    this._modeRow.hidden = !(s.share && s.profiles.length > 0);
    const mode =
      this._mode === 'profile' && s.profiles.length > 0
        ? 'profile'
        : s.share
          ? 'share'
          : 'profile';
    this._setMode(mode);
  }

  private _setMode(mode: 'share' | 'profile'): void {
    this._mode = mode;
    this._modeShare.classList.toggle('jp-mod-active', mode === 'share');
    this._modeProfile.classList.toggle('jp-mod-active', mode === 'profile');
    this._modeShare.setAttribute('aria-pressed', String(mode === 'share'));
    this._modeProfile.setAttribute('aria-pressed', String(mode === 'profile'));
    this._shareRow.hidden = mode !== 'share';
    this._memoryRow.hidden = mode !== 'share';
    this._profileRow.hidden = mode !== 'profile';
    this._changed();
  }

  private _values(): IRequestValues {
    const mem = this._memory.value.trim();
    return {
      selector: this._device.value || 'any',
      mode: this._mode,
      computeMilli: Number(this._slider.value),
      profile: this._profile.value,
      memoryGib: mem === '' ? null : Number(mem)
    };
  }

  private _changed(): void {
    this._sliderValue.textContent = formatShare(Number(this._slider.value));
    this._requestText.textContent = this.request;
    this._error.textContent = '';
    this._markField(null);
    this._explainSoon.invoke();
  }

  private async _explain(): Promise<void> {
    const request = this.request;
    const seq = ++this._explainSeq;
    try {
      const result = await explain(request, true);
      if (seq === this._explainSeq) {
        this._renderExplain(result);
      }
    } catch (err) {
      if (seq === this._explainSeq) {
        this._renderExplainError(err);
      }
    }
  }

  private _renderExplain(e: ExplainModel): void {
    this._lastExplain = e;
    this._preview.dataset.code = e.code;
    this._preview.textContent = '';
    const icon = e.fits ? '✓' : e.code === 'UNRESOLVABLE' ? '✕' : '…';
    this._preview.append(
      h('span', { class: 'flexlab-Explain-icon', 'aria-hidden': 'true' }, icon),
      h(
        'span',
        { class: 'flexlab-Explain-summary' },
        e.fits
          ? e.summary.replace(/^would/, 'Would')
          : e.code === 'UNRESOLVABLE'
            ? 'Can never fit this pool'
            : 'No room now: the lease would wait'
      )
    );
    if (!e.fits && e.reasons.length > 0) {
      const totals = new Map<string, number>();
      for (const r of e.reasons) {
        totals.set(r.reason, (totals.get(r.reason) ?? 0) + r.count);
      }
      const list = h('ul', { class: 'flexlab-Explain-reasons' });
      for (const [reason, count] of [...totals.entries()].sort(
        (a, b) => b[1] - a[1]
      )) {
        const models = e.reasons
          .filter(r => r.reason === reason)
          .map(r => r.model)
          .join(', ');
        list.append(
          h(
            'li',
            { title: models },
            h('span', { class: 'flexlab-Explain-count' }, String(count)),
            ` ${reasonText(reason)}`,
            h('span', { class: 'flexlab-Explain-models' }, ` · ${models}`)
          )
        );
      }
      this._preview.append(list);
    }
    this._submit.disabled = e.code === 'UNRESOLVABLE' || e.code === 'ERROR';
  }

  private _renderExplainError(err: unknown): void {
    this._lastExplain = null;
    this._preview.dataset.code = 'INVALID';
    this._preview.textContent = '';
    const message = err instanceof Error ? err.message : String(err);
    this._preview.append(
      h('span', { class: 'flexlab-Explain-icon', 'aria-hidden': 'true' }, '!'),
      h('span', { class: 'flexlab-Explain-summary' }, message)
    );
    if (err instanceof ApiError) {
      this._markField(err.field);
    }
    this._submit.disabled = true;
  }

  private _markField(field: string | null): void {
    const byField: Record<string, HTMLElement> = {
      compute: this._slider,
      memory: this._memory,
      profile: this._profile,
      selector: this._device,
      ttl: this._ttl,
      priority: this._priority
    };
    for (const [name, el] of Object.entries(byField)) {
      el.classList.toggle('flexlab-mod-invalid', name === field);
    }
  }

  private async _commit(): Promise<void> {
    const priority = Number(this._priority.value || '0');
    this._submit.disabled = true;
    this._error.textContent = '';
    try {
      const lease = await createLease({
        request: this.request,
        ttl: this._ttl.value,
        priority: Number.isFinite(priority) ? Math.trunc(priority) : 0
      });
      this.options.onLeased(lease);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this._error.textContent = message;
      if (err instanceof ApiError) {
        this._markField(err.field);
      }
    } finally {
      this._submit.disabled = this._lastExplain?.code === 'UNRESOLVABLE';
      this._explainSoon.invoke();
    }
  }

  private _device: HTMLSelectElement;
  private _modeShare: HTMLButtonElement;
  private _modeProfile: HTMLButtonElement;
  private _modeRow: HTMLElement;
  private _slider: HTMLInputElement;
  private _sliderValue: HTMLOutputElement;
  private _profile: HTMLSelectElement;
  private _memory: HTMLInputElement;
  private _ttl: HTMLSelectElement;
  private _priority: HTMLInputElement;
  private _requestText: HTMLElement;
  private _preview: HTMLDivElement;
  private _error: HTMLDivElement;
  private _submit: HTMLButtonElement;
  private _shareRow: HTMLElement;
  private _profileRow: HTMLElement;
  private _memoryRow: HTMLElement;
  private _mode: 'share' | 'profile' = 'share';
  private _choices: DeviceChoiceModel[] = [];
  private _choicesKey = '';
  private _explainSeq = 0;
  private _lastExplain: ExplainModel | null = null;
  private _explainSoon = new Debouncer(() => this._explain(), 250);
}
