/**
 * The wire models of `/flexlab/api/`, mirrored one to one from the Python TypedDicts in
 * `extension/flexlab_jupyter/models.py` (the source of truth). `tests/jupyter/test_models.py`
 * parses this file and fails when a field, its type or its doc comment is missing here.
 */

/** The state of a lease. */
export type LeaseState =
  | 'pending'
  | 'active'
  | 'recovering'
  | 'released'
  | 'expired';

/** The outcome of an explanation. */
export type ExplainCode =
  | 'SUCCESS'
  | 'UNSCHEDULABLE'
  | 'UNRESOLVABLE'
  | 'ERROR';

/** The group of a device selector entry. */
export type MenuGroup = 'any' | 'kind' | 'vendor' | 'model';

/** A slice of one device: shared (any owner's tasks) or held by a lease. */
export interface SliceModel {
  /** The slice's id in the pool ("s3"; a lease's slice is named after it, "L2"). */
  slice_id: string;
  /** Compute per device in milli-units (1000 = the whole device). */
  compute_milli: number;
  /** Device memory of the slice in MiB. */
  memory_mib: number;
  /** The named profile (MIG "1g.10gb", vNPU "vir05_1c_16g"), null for fractions. */
  profile: string | null;
  /** The lease holding it, null for a shared slice. */
  lease_id: string | null;
  /** The lease's owner, null for a shared slice. */
  owner: string | null;
  /** "starting", "ready", "lost" or "stopped". */
  state: string;
  /** Tasks bound to it now (queued and running). */
  tasks: number;
  /** Busy share of the slice's compute, 0..1, from the last telemetry. */
  utilisation: number;
  /** Device memory in use in MiB, from the last telemetry. */
  memory_used_mib: number;
  /** The placement policy that placed it ("flexlab"), null when not recorded. */
  policy: string | null;
}

/** One accelerator of a host and how it is sliced. */
export interface DeviceModel {
  /** The pool's device id, "host/model#index" ("nvidia-b/a100-80gb#1"). */
  id: string;
  /** "nvidia", "huawei", "cambricon" or "mock". */
  vendor: string;
  /** The catalog key ("a100-80gb", "ascend-910b3"). */
  model: string;
  /** The product name ("NVIDIA A100 80GB"). */
  name: string;
  /** "gpu", "npu" or "mlu". */
  kind: string;
  /** The device's index on its host. */
  index: number;
  /** "fraction" (shares in steps of granularity_milli) or "profile" (named profiles). */
  mode: string;
  /** Total device memory in MiB. */
  memory_mib: number;
  /** Compute not carved into any slice, in milli-units. */
  free_compute_milli: number;
  /** Memory not carved into any slice, in MiB. */
  free_memory_mib: number;
  /** False while the device is drained or failed. */
  schedulable: boolean;
  /** Busy share of the whole device, 0..1. */
  utilisation: number;
  /** Device memory in use in MiB. */
  memory_used_mib: number;
  /** The smallest step of a fraction, in milli-units (100 = 10%). */
  granularity_milli: number;
  /** The profile menu of a profile-sliced device (empty for fractions). */
  profiles: string[];
  /** Profiles that could be carved now from its free space. */
  free_profiles: string[];
  /** The slices carved from it. */
  slices: SliceModel[];
  /** The vendor as people read it ("NVIDIA", "Huawei"). */
  vendor_name: string;
}

/** A machine of the pool and its accelerators. */
export interface HostModel {
  /** The host's name in the pool ("nvidia-b"). */
  name: string;
  /** Where its agent runs (may be empty for the embedded pool). */
  address: string;
  /** Host CPU in milli-cores. */
  cpu_milli: number;
  /** Host CPU not held by slices, in milli-cores. */
  free_cpu_milli: number;
  /** Host RAM in MiB. */
  memory_mib: number;
  /** Host RAM not held by slices, in MiB. */
  free_memory_mib: number;
  /** Its accelerators, by model and index. */
  devices: DeviceModel[];
}

/** A request shape the placement policy expects, and how likely it is. */
export interface PolicyShapeModel {
  /** Compute per device in milli-units (1000 = the whole device). */
  compute_milli: number;
  /** Devices on one host (0 for a CPU-only request). */
  devices: number;
  /** Host CPU in milli-cores. */
  host_cpu_milli: number;
  /** Host RAM in MiB (0 where the policy does not count it). */
  host_memory_mib: number;
  /** The catalog models it may run on (empty: any). */
  models: string[];
  /** Its probability, 0..1. */
  weight: number;
}

/** The pool's placement policy and what it learned of the requests it places. */
export interface PolicyModel {
  /** The policy: "flexlab", "fgd", "bestfit", "firstfit", "binpack" or "spread". */
  name: string;
  /** What it does, for people. */
  description: string;
  /** True when it learns the shapes of requests (fgd, flexlab). */
  learns: boolean;
  /** True when it places against shapes given up front (and learns nothing). */
  seeded: boolean;
  /** How many of the latest requests it learns from. */
  window: number;
  /** Requests in that window now. */
  in_window: number;
  /** Requests it has seen since the scheduler started. */
  observations: number;
  /** How often it rebuilt its shapes from the window. */
  rebuilds: number;
  /** How many requests the cold-start prior counted as at first. */
  prior_weight: number;
  /** How many requests the prior still counts as (0 once learned). */
  prior_weight_left: number;
  /** Shapes it expects. */
  shapes_total: number;
  /** The most likely of them, most likely first. */
  shapes: PolicyShapeModel[];
}

/** One entry of the request form's device selector, as the scheduler computed it. */
export interface DeviceChoiceModel {
  /** The selector word of the request string ("any", "npu", "huawei", "a100-80gb"). */
  value: string;
  /** What the menu shows ("Huawei (4)"). */
  label: string;
  /** "any", "kind", "vendor" or "model". */
  group: MenuGroup;
  /** The ids of the pool's devices it selects. */
  devices: string[];
  /** Whether fraction-sliced devices are among them (a share can be asked). */
  share: boolean;
  /** The share step in milli-units: the coarsest granularity of those devices. */
  share_step_milli: number;
  /** The profile menu of its profile-sliced devices (empty: none). */
  profiles: string[];
  /** The largest device memory among them, MiB. */
  max_memory_mib: number;
}

/** `GET /flexlab/api/pool`: the pool by host and device. */
export interface PoolModel {
  /** When the scheduler took this snapshot, seconds since the epoch. */
  time: number;
  /** The lease owner this server acts as for the caller. */
  user: string;
  /** The pool's hosts. */
  hosts: HostModel[];
  /** Tasks waiting for capacity. */
  waiting: number;
  /** The placement policy and what it learned. */
  policy: PolicyModel;
  /** The request form's device selector, in order. */
  menu: DeviceChoiceModel[];
}

/** A slice reserved for one owner (`flexlab.lease`), as the REST API shows it. */
export interface LeaseModel {
  /** The lease's id ("L3"). */
  lease_id: string;
  /** Who holds it. */
  owner: string;
  /** What was asked for ("npu:25%,16GiB"). */
  request: string;
  /** "pending", "active", "recovering", "released" or "expired". */
  state: LeaseState;
  /** Why it is in that state (why it waits), may be empty. */
  reason: string;
  /** Its priority, -1000..1000 (higher first). */
  priority: number;
  /** Its time to live in seconds, from creation or the last renewal. */
  ttl_s: number;
  /** When it was asked for, seconds since the epoch. */
  created: number;
  /** When its TTL runs out, seconds since the epoch. */
  expires_at: number;
  /** Seconds of TTL left (0 when it ran out). */
  ttl_left_s: number;
  /** Its slice, null while it waits for one. */
  slice_id: string | null;
  /** The host of its slice. */
  host: string | null;
  /** The device ids of its slice. */
  devices: string[];
  /** The catalog model of its slice. */
  model: string | null;
  /** Compute of its slice per device, milli-units. */
  compute_milli: number | null;
  /** Device memory of its slice, MiB. */
  memory_mib: number | null;
  /** The profile of its slice, null for fractions. */
  profile: string | null;
  /** Busy share of its slice, 0..1. */
  utilisation: number;
  /** Device memory in use, MiB. */
  memory_used_mib: number;
  /** The placement policy that placed its slice, null while it waits. */
  policy: string | null;
  /** Its worker joins its owner's own scheduler, which nobody else can reach. */
  private: boolean;
  /** Python that re-attaches to it from a kernel. */
  attach_code: string;
}

/** `GET /flexlab/api/leases`: the caller's leases. */
export interface LeaseListModel {
  /** Live leases first (pending, active, recovering), newest first. */
  leases: LeaseModel[];
}

/** Where an explained request would land. */
export interface WhereModel {
  /** The host. */
  host: string;
  /** The device ids. */
  devices: string[];
  /** The profile it would get, null for a fraction. */
  profile: string | null;
  /** Compute per device, milli-units. */
  compute_milli: number[];
  /** Device memory per device, MiB. */
  memory_mib: number[];
}

/** How many devices of one model rejected a request for one reason. */
export interface ReasonCountModel {
  /** A catalog model key, or "no-accelerator". */
  model: string;
  /** A placement reason ("INSUFFICIENT_COMPUTE", "KIND_MISMATCH", ...). */
  reason: string;
  /** How many devices of that model gave it. */
  count: number;
  /** True when a release or re-slice could remove it. */
  resolvable: boolean;
}

/** `POST /flexlab/api/explain`: where a request would land now, or why not. */
export interface ExplainModel {
  /** The request as understood ("npu:25%,16GiB"). */
  request: string;
  /** Explained as a new lease (idle shared slices reclaimable) or as a task. */
  lease: boolean;
  /** SUCCESS, UNSCHEDULABLE (not now) or UNRESOLVABLE (never in this pool). */
  code: ExplainCode;
  /** True when it would be placed now. */
  fits: boolean;
  /** Where it would land, when it fits. */
  where: WhereModel | null;
  /** One line for people ("would land on nvidia-b/a100-80gb#1 as 1g.10gb"). */
  summary: string;
  /** Candidates (devices or hosts) looked at. */
  considered: number;
  /** Candidates that would take it. */
  feasible: number;
  /** Counted reasons of the rejecting candidates, most first. */
  reasons: ReasonCountModel[];
}

/** Something the pool did, with its reason. */
export interface EventModel {
  /** Increasing sequence number (use it as `since`). */
  seq: number;
  /** When, seconds since the epoch. */
  time: number;
  /** "lease", "carve", "reclaim", "wait", "host", ... */
  kind: string;
  /** What happened, for people. */
  message: string;
  /** The owner concerned, null for pool-wide events. */
  owner: string | null;
  /** The lease concerned. */
  lease_id: string | null;
  /** The slice concerned. */
  slice_id: string | null;
  /** The host concerned. */
  host: string | null;
  /** Ties the event to a placement decision (may be empty). */
  decision_id: string;
}

/** `GET /flexlab/api/events`: the caller's and pool-wide events after `since`. */
export interface EventListModel {
  /** Oldest first. */
  events: EventModel[];
  /** The highest `seq` seen (pass it as `since` next time). */
  last: number;
}

/** `GET /flexlab/api/info`: how this server reaches the pool. */
export interface InfoModel {
  /** The lease owner this server acts as for the caller. */
  user: string;
  /** The pool's Dask scheduler address. */
  scheduler: string;
  /** True when the server runs the embedded mock pool itself. */
  embedded: boolean;
  /** Flexlab's version. */
  version: string;
  /** The TTL of a lease that names none ("1h"). */
  default_ttl: string;
  /** The longest TTL a lease may ask for ("7d"). */
  max_ttl: string;
}

/** Every 4xx/5xx answer of the API. */
export interface ErrorModel {
  /** The error class ("InvalidRequest", "NotOwner", "UnknownName", ...). */
  error: string;
  /** What went wrong, for people. */
  message: string;
  /** The input field at fault, for InvalidRequest. */
  field: string | null;
  /** What that field allows, for InvalidRequest. */
  allowed: string | null;
  /** The placement code, for Unschedulable ("UNRESOLVABLE"). */
  code: string | null;
}

/** A private scheduler's worker credentials: where a private lease's slice worker joins. */
export interface PrivateModel {
  /** The private scheduler's address ("tls://10.0.0.9:40123"). */
  scheduler: string;
  /** PEM of the CA the private scheduler's certificates chain to. */
  ca: string;
  /** PEM of the certificate the slice worker shows. */
  cert: string;
  /** PEM of that certificate's private key. */
  key: string;
}

/** `POST /flexlab/api/leases`: ask for a lease. */
export interface LeaseCreateBody {
  /** Required: a request string ("npu:25%,16GiB", "a100:1g.10gb", "any:0.5"). */
  request: string;
  /** Time to live ("30m", "2h", 3600); default: the pool's default TTL. */
  ttl?: string | number;
  /** -1000..1000, default 0. */
  priority?: number;
  /** A private lease: its worker joins this scheduler, not the pool's. */
  private?: PrivateModel;
}

/** `POST /flexlab/api/leases/{id}/renew`: a new TTL, counted from now. */
export interface RenewBody {
  /** Required: "30m", "2h", 3600, at most the pool's max TTL. */
  ttl: string | number;
}

/** `POST /flexlab/api/explain`: a request to explain. */
export interface ExplainBody {
  /** Required: a request string ("npu:25%,16GiB", "a100:1g.10gb", "any:0.5"). */
  request: string;
  /** Explain as a new lease (default true) or as a task. */
  lease?: boolean;
}
