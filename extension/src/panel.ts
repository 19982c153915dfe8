/**
 * The "Accelerators" sidebar panel: the pool by host and device, "My leases" and the
 * request form, refreshed by a backing-off `Poll` that stands by while hidden.
 */
import { Notification } from '@jupyterlab/apputils';
import { LabIcon, refreshIcon } from '@jupyterlab/ui-components';
import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import {
  ApiError,
  getInfo,
  getPool,
  listLeases,
  releaseLease,
  renewLease
} from './api';
import { h } from './dom';
import { RequestForm } from './form';
import {
  formatDuration,
  formatMemory,
  formatShare,
  formatUtil
} from './format';
import {
  DeviceModel,
  InfoModel,
  LeaseModel,
  PoolModel,
  SliceModel
} from './models';

export interface IPanelOptions {
  /** The sidebar icon. */
  icon: LabIcon;
  /** Seconds between refreshes (the poll backs off on errors). */
  refreshInterval: number;
  /** The TTL the form starts with, and what "Renew" asks for. */
  defaultTtl: string;
  /** The scheduler address the user expects (empty: whatever the server uses). */
  schedulerAddress: string;
  /** Add a cell with this code to the active notebook. */
  insertCode: (code: string) => Promise<void>;
}

/** The product name without the vendor, which the badge shows: "A100 80GB". */
function productName(d: DeviceModel): string {
  const vendor = d.vendor_name;
  return d.name.startsWith(`${vendor} `) ? d.name.slice(vendor.length + 1) : d.name;
}

/** The sidebar panel. */
export class AcceleratorsPanel extends Widget {
  constructor(private _options: IPanelOptions) {
    super();
    this.id = 'flexlab-accelerators';
    this.addClass('flexlab-Panel');
    this.title.icon = _options.icon;
    this.title.caption = 'Accelerators';

    this._status = h('div', { class: 'flexlab-Header-status' });
    const refresh = h('button', {
      class: 'flexlab-IconButton',
      title: 'Refresh now',
      'aria-label': 'Refresh'
    });
    refreshIcon.element({ container: refresh, height: '16px', width: '16px' });
    refresh.addEventListener('click', () => void this._poll.refresh());
    this._poolNode = h('div', { class: 'flexlab-Pool' });
    this._leasesNode = h('div', { class: 'flexlab-Leases' });
    this._form = new RequestForm({
      defaultTtl: _options.defaultTtl,
      onLeased: lease => {
        Notification.success(
          `Lease ${lease.lease_id}: ${lease.request} (${lease.state})`,
          { autoClose: 3000 }
        );
        this._leases = [lease, ...this._leases];
        this._renderLeases();
        void this._poll.refresh();
      }
    });

    const section = (
      title: string,
      name: string,
      ...body: HTMLElement[]
    ): HTMLElement =>
      h(
        'section',
        { class: 'flexlab-Section', 'data-section': name },
        h('h3', { class: 'flexlab-Section-title' }, title),
        ...body
      );
    this.node.append(
      h(
        'header',
        { class: 'flexlab-Header' },
        h(
          'div',
          { class: 'flexlab-Header-text' },
          h('h2', { class: 'flexlab-Header-title' }, 'Accelerators'),
          this._status
        ),
        refresh
      ),
      h(
        'div',
        { class: 'flexlab-Body' },
        section('Pool', 'pool', this._legend(), this._poolNode),
        section('My leases', 'leases', this._leasesNode),
        section('Request a slice', 'request', this._form.node)
      )
    );

    this._poll = new Poll({
      auto: true,
      factory: () => this.refresh(),
      frequency: {
        interval: Math.max(1, _options.refreshInterval) * 1000,
        backoff: true,
        max: 60 * 1000
      },
      standby: () => !this.isVisible || 'when-hidden',
      name: 'flexlab:pool'
    });
    this._tick = window.setInterval(() => this._tickTtl(), 1000);
  }

  /** Apply changed settings. */
  configure(options: Partial<IPanelOptions>): void {
    this._options = { ...this._options, ...options };
    this._poll.frequency = {
      ...this._poll.frequency,
      interval: Math.max(1, this._options.refreshInterval) * 1000
    };
  }

  /** Fetch the pool and my leases, then render them. */
  async refresh(): Promise<void> {
    try {
      const [info, pool, leases] = await Promise.all([
        this._info ? Promise.resolve(this._info) : getInfo(),
        getPool(),
        listLeases()
      ]);
      this._info = info;
      this._pool = pool;
      this._leases = leases.leases;
      this._fetchedAt = Date.now() / 1000;
      this._error = '';
      this._render();
      this._form.update(pool);
    } catch (err) {
      this._error =
        err instanceof ApiError
          ? `${err.model.error}: ${err.message}`
          : String(err);
      this._renderStatus();
      throw err; // the poll backs off
    }
  }

  protected onAfterShow(): void {
    void this._poll.refresh();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    window.clearInterval(this._tick);
    this._poll.dispose();
    this._form.dispose();
    super.dispose();
  }

  // ---------------------------------------------------------------- rendering
  private _render(): void {
    this._renderStatus();
    this._renderPool();
    this._renderLeases();
  }

  private _renderStatus(): void {
    this._status.textContent = '';
    this._status.classList.toggle('flexlab-mod-error', !!this._error);
    if (this._error) {
      this._status.append(this._error);
      return;
    }
    const info = this._info;
    const pool = this._pool;
    if (!info || !pool) {
      this._status.append('Connecting…');
      return;
    }
    const devices = pool.hosts.reduce((n, x) => n + x.devices.length, 0);
    const where = info.embedded ? 'embedded mock pool' : info.scheduler;
    const expected = this._options.schedulerAddress;
    this._status.append(
      `${pool.hosts.length} hosts · ${devices} devices · ${where}`,
      h('br'),
      `you are ${info.user}`,
      pool.waiting ? ` · ${pool.waiting} tasks waiting` : ''
    );
    if (expected && !info.embedded && expected !== info.scheduler) {
      this._status.append(
        h(
          'div',
          { class: 'flexlab-mod-warn' },
          `settings expect ${expected}; the server uses ${info.scheduler}`
        )
      );
    }
  }

  private _legend(): HTMLElement {
    const item = (cls: string, text: string): HTMLElement =>
      h(
        'span',
        { class: 'flexlab-Legend-item' },
        h('span', { class: `flexlab-Legend-swatch ${cls}` }),
        text
      );
    return h(
      'div',
      { class: 'flexlab-Legend' },
      item('flexlab-mod-mine', 'yours'),
      item('flexlab-mod-other', 'leased'),
      item('flexlab-mod-shared', 'shared'),
      item('flexlab-mod-free', 'free')
    );
  }

  private _renderPool(): void {
    const pool = this._pool;
    this._poolNode.textContent = '';
    if (!pool) {
      return;
    }
    for (const host of pool.hosts) {
      const free = `${(host.free_cpu_milli / 1000).toFixed(0)} / ${(host.cpu_milli / 1000).toFixed(0)} cores free`;
      this._poolNode.append(
        h(
          'div',
          { class: 'flexlab-Host', 'data-host': host.name },
          h(
            'div',
            { class: 'flexlab-Host-header' },
            h('span', { class: 'flexlab-Host-name' }, host.name),
            h('span', { class: 'flexlab-Host-meta' }, free)
          ),
          ...host.devices.map(d => this._device(d, pool.user))
        )
      );
    }
  }

  private _device(d: DeviceModel, me: string): HTMLElement {
    const bar = h('div', { class: 'flexlab-Bar', role: 'list' });
    const total = 1000;
    for (const s of d.slices) {
      bar.append(this._slice(s, me, total));
    }
    // a sliver left over by profile rounding (7 x 1/7) is not worth a segment
    if (d.free_compute_milli >= Math.max(20, d.granularity_milli)) {
      bar.append(
        h(
          'div',
          {
            class: 'flexlab-Slice flexlab-mod-free',
            style: `flex-grow: ${d.free_compute_milli}`,
            title: `free: ${formatShare(d.free_compute_milli)}, ${formatMemory(d.free_memory_mib)}`
          },
          h('span', { class: 'flexlab-Slice-label' }, 'free')
        )
      );
    }
    const slicing =
      d.mode === 'profile'
        ? d.vendor === 'nvidia'
          ? 'MIG'
          : 'vNPU'
        : `${formatShare(d.granularity_milli)} steps`;
    return h(
      'div',
      {
        class: 'flexlab-Device',
        'data-device': d.id,
        'data-vendor': d.vendor
      },
      h(
        'div',
        { class: 'flexlab-Device-header' },
        h(
          'span',
          { class: 'flexlab-Vendor', 'data-vendor': d.vendor },
          d.vendor_name
        ),
        h(
          'span',
          { class: 'flexlab-Device-name', title: `${d.name} (${d.id})` },
          productName(d),
          h('span', { class: 'flexlab-Device-index' }, ` #${d.index}`)
        ),
        h('span', { class: 'flexlab-Tag' }, slicing),
        !d.schedulable ? h('span', { class: 'flexlab-Tag flexlab-mod-warn' }, 'drained') : null
      ),
      bar,
      h(
        'div',
        { class: 'flexlab-Device-meta' },
        h('span', {}, `${d.kind.toUpperCase()} · util ${formatUtil(d.utilisation)}`),
        h(
          'span',
          {},
          `${formatMemory(d.memory_used_mib)} / ${formatMemory(d.memory_mib)}`
        )
      )
    );
  }

  private _slice(s: SliceModel, me: string, total: number): HTMLElement {
    const whose = s.owner === null ? 'shared' : s.owner === me ? 'mine' : 'other';
    const shape = s.profile ?? formatShare(s.compute_milli);
    const who = s.owner === null ? 'shared' : s.owner;
    const title = [
      `${s.slice_id}: ${shape}, ${formatMemory(s.memory_mib)}`,
      s.lease_id ? `lease ${s.lease_id} of ${s.owner}` : 'shared by all',
      `utilisation ${formatUtil(s.utilisation)}, ${s.tasks} tasks`,
      `state ${s.state}`
    ].join('\n');
    return h(
      'div',
      {
        class: `flexlab-Slice flexlab-mod-${whose}`,
        role: 'listitem',
        style: `flex-grow: ${Math.max(1, (s.compute_milli / total) * 1000)}`,
        title,
        'data-slice': s.slice_id,
        'data-owner': s.owner ?? '',
        'data-state': s.state
      },
      h('span', {
        class: 'flexlab-Slice-util',
        style: `height: ${Math.round(Math.min(1, s.utilisation) * 100)}%`
      }),
      h(
        'span',
        { class: 'flexlab-Slice-label' },
        s.lease_id ? `${shape} · ${s.lease_id}` : shape
      ),
      h('span', { class: 'flexlab-Slice-owner' }, `${who} · ${formatUtil(s.utilisation)}`)
    );
  }

  private _renderLeases(): void {
    this._leasesNode.textContent = '';
    if (this._leases.length === 0) {
      this._leasesNode.append(
        h(
          'p',
          { class: 'flexlab-Empty' },
          'No leases. Request a slice below, or run ',
          h('code', {}, '%flex lease npu:0.25'),
          ' in a notebook.'
        )
      );
      return;
    }
    for (const lease of this._leases) {
      this._leasesNode.append(this._lease(lease));
    }
  }

  private _lease(l: LeaseModel): HTMLElement {
    const shape = l.profile ?? formatShare(l.compute_milli);
    const where = l.devices.length
      ? `${l.devices.join(', ')} · ${shape} · ${formatMemory(l.memory_mib)}`
      : l.reason || 'waiting for a slice';
    const ttl = h(
      'span',
      { class: 'flexlab-Lease-ttl', 'data-expires': String(l.ttl_left_s) },
      this._ttlText(l.ttl_left_s)
    );
    const insert = h(
      'button',
      {
        type: 'button',
        class: 'flexlab-Button',
        title: 'Add a cell that uses this lease to the active notebook'
      },
      'Insert code'
    );
    insert.addEventListener('click', () => {
      void this._options.insertCode(l.attach_code).catch(err =>
        Notification.error(`Could not insert the code: ${err}`)
      );
    });
    const renew = h(
      'button',
      {
        type: 'button',
        class: 'flexlab-Button',
        title: `Renew for ${this._options.defaultTtl} from now`
      },
      'Renew'
    );
    renew.addEventListener('click', () => {
      void this._act(renewLease(l.lease_id, this._options.defaultTtl), 'renewed');
    });
    const release = h(
      'button',
      {
        type: 'button',
        class: 'flexlab-Button flexlab-Lease-release',
        title: 'Give the slice back'
      },
      'Release'
    );
    release.addEventListener('click', () => {
      release.disabled = true;
      void this._act(releaseLease(l.lease_id), 'released');
    });
    return h(
      'div',
      {
        class: 'flexlab-Lease',
        'data-lease': l.lease_id,
        'data-state': l.state
      },
      h(
        'div',
        { class: 'flexlab-Lease-header' },
        h('span', { class: 'flexlab-Lease-id' }, l.lease_id),
        h('span', { class: `flexlab-State flexlab-mod-${l.state}` }, l.state),
        l.private &&
          h(
            'span',
            {
              class: 'flexlab-State flexlab-Lease-private',
              title:
                'Its worker joins a Dask scheduler of your own, which nobody else can reach'
            },
            'private'
          ),
        h('code', { class: 'flexlab-Lease-request' }, l.request),
        ttl
      ),
      h('div', { class: 'flexlab-Lease-where', title: l.reason }, where),
      h(
        'div',
        { class: 'flexlab-Lease-util' },
        h(
          'span',
          { class: 'flexlab-Meter' },
          h('span', {
            class: 'flexlab-Meter-fill',
            style: `width: ${Math.round(Math.min(1, l.utilisation) * 100)}%`
          })
        ),
        h(
          'span',
          {},
          `util ${formatUtil(l.utilisation)} · ${formatMemory(l.memory_used_mib)} used`
        )
      ),
      h('div', { class: 'flexlab-Lease-actions' }, insert, renew, release)
    );
  }

  private _ttlText(left: number): string {
    return `${formatDuration(left)} left`;
  }

  private _tickTtl(): void {
    if (!this.isVisible) {
      return;
    }
    const elapsed = Date.now() / 1000 - this._fetchedAt;
    this._leasesNode
      .querySelectorAll<HTMLElement>('.flexlab-Lease-ttl')
      .forEach(el => {
        const left = Number(el.dataset.expires ?? '0') - elapsed;
        el.textContent = this._ttlText(left);
      });
  }

  private async _act(
    action: Promise<LeaseModel>,
    verb: string
  ): Promise<void> {
    try {
      const lease = await action;
      Notification.info(`Lease ${lease.lease_id} ${verb}`, { autoClose: 3000 });
    } catch (err) {
      Notification.error(
        err instanceof Error ? err.message : String(err),
        { autoClose: 6000 }
      );
    }
    await this._poll.refresh();
  }

  private _status: HTMLElement;
  private _poolNode: HTMLElement;
  private _leasesNode: HTMLElement;
  private _form: RequestForm;
  private _poll: Poll;
  private _tick: number;
  private _info: InfoModel | null = null;
  private _pool: PoolModel | null = null;
  private _leases: LeaseModel[] = [];
  private _fetchedAt = 0;
  private _error = '';
}
