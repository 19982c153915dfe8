/**
 * What the request form offers, from the pool, and the request string it composes.
 *
 * Request strings follow `flexlab/core/request.py`: `SELECTOR:SHARE[,MEMORY]` or
 * `SELECTOR:PROFILE`, e.g. `npu:25%,16GiB`, `a100-80gb:1g.10gb`, `any:50%`.
 */
import { vendorName } from './format';
import { DeviceModel, PoolModel } from './models';

/** One entry of the device selector. */
export interface IDeviceChoice {
  /** The selector word of the request string ("any", "npu", "huawei", "a100-80gb"). */
  value: string;
  /** What the menu shows. */
  label: string;
  /** The menu group. */
  group: 'Any' | 'Kind' | 'Vendor' | 'Model';
  /** The pool's devices it selects. */
  devices: DeviceModel[];
}

/** The device selector's entries: any, the kinds, the vendors and the models in the pool. */
export function deviceChoices(pool: PoolModel): IDeviceChoice[] {
  const devices = pool.hosts.flatMap(h => h.devices);
  const out: IDeviceChoice[] = [
    { value: 'any', label: 'Any accelerator', group: 'Any', devices }
  ];
  const by = (key: (d: DeviceModel) => string): Map<string, DeviceModel[]> => {
    const m = new Map<string, DeviceModel[]>();
    for (const d of devices) {
      const k = key(d);
      m.set(k, [...(m.get(k) ?? []), d]);
    }
    return new Map([...m.entries()].sort(([a], [b]) => a.localeCompare(b)));
  };
  for (const [kind, ds] of by(d => d.kind)) {
    out.push({
      value: kind,
      label: `Any ${kind.toUpperCase()} (${ds.length})`,
      group: 'Kind',
      devices: ds
    });
  }
  for (const [vendor, ds] of by(d => d.vendor)) {
    out.push({
      value: vendor,
      label: `${vendorName(vendor)} (${ds.length})`,
      group: 'Vendor',
      devices: ds
    });
  }
  for (const [model, ds] of by(d => d.model)) {
    out.push({
      value: model,
      label: `${ds[0].name} (${ds.length})`,
      group: 'Model',
      devices: ds
    });
  }
  return out;
}

/** How a choice can be sliced: shares (with their step) and/or a profile menu. */
export interface ISlicing {
  /** Fraction-sliced devices are among the choice. */
  share: boolean;
  /** The share step in milli-units: the coarsest granularity of those devices. */
  step: number;
  /** The profile menu of its profile-sliced devices (empty: none). */
  profiles: string[];
  /** The largest device memory in MiB (the memory field's bound). */
  maxMemoryMib: number;
}

/** The slicing a choice offers. */
export function slicingOf(choice: IDeviceChoice): ISlicing {
  const fractions = choice.devices.filter(d => d.mode !== 'profile');
  const profiled = choice.devices.filter(d => d.mode === 'profile');
  const profiles: string[] = [];
  for (const d of profiled) {
    for (const p of d.profiles) {
      if (!profiles.includes(p)) {
        profiles.push(p);
      }
    }
  }
  const step = Math.max(10, ...fractions.map(d => d.granularity_milli || 10));
  return {
    share: fractions.length > 0,
    step,
    profiles,
    maxMemoryMib: Math.max(0, ...choice.devices.map(d => d.memory_mib))
  };
}

/** The form's values. */
export interface IRequestValues {
  /** The selector word. */
  selector: string;
  /** "share" or "profile". */
  mode: 'share' | 'profile';
  /** The share in milli-units (share mode). */
  computeMilli: number;
  /** The profile (profile mode). */
  profile: string;
  /** Device memory in GiB; 0 or empty = proportional to the share (share mode). */
  memoryGib: number | null;
}

/** The request string of the form's values: "npu:25%,16GiB", "a100-80gb:1g.10gb". */
export function composeRequest(v: IRequestValues): string {
  if (v.mode === 'profile') {
    return `${v.selector}:${v.profile}`;
  }
  const pct = Math.round(v.computeMilli) / 10;
  const mem =
    v.memoryGib !== null && v.memoryGib > 0 ? `,${+v.memoryGib.toFixed(2)}GiB` : '';
  return `${v.selector}:${pct}%${mem}`;
}
