/**
 * What the request form offers, from the pool, and the request string it composes.
 *
 * Request strings follow `flexlab/core/request.py`: `SELECTOR:SHARE[,MEMORY]` or
 * `SELECTOR:PROFILE`, e.g. `npu:25%,16GiB`, `a100-80gb:1g.10gb`, `any:50%`.
 */
import { DeviceChoiceModel, PoolModel } from './models';

/**
 * The device selector's entries: any, the kinds, the vendors and the models in the pool, as
 * the scheduler computed them (`flexlab/core/poolstate/menu.py`, `device_menu`); the notebook
 * widget shows the same menu.
 */
export function deviceChoices(pool: PoolModel): DeviceChoiceModel[] {
  return pool.menu;
}

/** The menu group's heading. */
export function groupHeading(group: DeviceChoiceModel['group']): string {
  return { any: 'Any', kind: 'Kinds', vendor: 'Vendors', model: 'Models' }[group];
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
export function slicingOf(choice: DeviceChoiceModel): ISlicing {
  return {
    share: choice.share,
    step: choice.share_step_milli,
    profiles: choice.profiles,
    maxMemoryMib: choice.max_memory_mib
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
