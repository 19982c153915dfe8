/**
 * All fetching of the panel: one function per route of `/flexlab/api/` (see openapi.yaml).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import {
  ErrorModel,
  EventListModel,
  ExplainModel,
  InfoModel,
  LeaseCreateBody,
  LeaseListModel,
  LeaseModel,
  PoolModel
} from './models';

/** An answer of the API that is not a success, with the server's error model. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly model: ErrorModel
  ) {
    super(model.message);
  }

  /** The input field at fault, when the server named one. */
  get field(): string | null {
    return this.model.field;
  }
}

async function call<T>(
  path: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, 'flexlab', 'api', path);
  // 'no-cache' revalidates every time without the default cache-busting `?<time>`
  // parameter, which the API would refuse as an unknown query parameter.
  const response = await ServerConnection.makeRequest(
    url,
    { cache: 'no-cache', ...init },
    settings
  );
  const text = await response.text();
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const model: ErrorModel =
      data && typeof data === 'object' && 'message' in data
        ? (data as ErrorModel)
        : {
            error: `HTTP${response.status}`,
            message: text || response.statusText,
            field: null,
            allowed: null,
            code: null
          };
    throw new ApiError(response.status, model);
  }
  return data as T;
}

function post(body: unknown): RequestInit {
  return { method: 'POST', body: JSON.stringify(body) };
}

/** `GET info`: who the caller is for the pool, and where the pool is. */
export function getInfo(): Promise<InfoModel> {
  return call<InfoModel>('info');
}

/** `GET pool`: the pool by host and device. */
export function getPool(): Promise<PoolModel> {
  return call<PoolModel>('pool');
}

/** `GET leases`: the caller's live leases. */
export function listLeases(): Promise<LeaseListModel> {
  return call<LeaseListModel>('leases');
}

/** `POST leases`: ask for a lease. */
export function createLease(body: LeaseCreateBody): Promise<LeaseModel> {
  return call<LeaseModel>('leases', post(body));
}

/** `DELETE leases/{id}`: give a lease back. */
export function releaseLease(leaseId: string): Promise<LeaseModel> {
  return call<LeaseModel>(`leases/${encodeURIComponent(leaseId)}`, {
    method: 'DELETE'
  });
}

/** `POST leases/{id}/renew`: a new TTL from now. */
export function renewLease(
  leaseId: string,
  ttl: string | number
): Promise<LeaseModel> {
  return call<LeaseModel>(
    `leases/${encodeURIComponent(leaseId)}/renew`,
    post({ ttl })
  );
}

/** `POST explain`: where a request would land now, or the counted reasons why not. */
export function explain(request: string, lease = true): Promise<ExplainModel> {
  return call<ExplainModel>('explain', post({ request, lease }));
}

/** `GET events?since=`: the caller's and pool-wide events. */
export function getEvents(since: number): Promise<EventListModel> {
  return call<EventListModel>(`events?since=${since}`);
}
