export { backoffDelayMs, IllegalTransitionError, type LifecycleEvent, nextStatus, TRANSITIONS } from './lifecycle.js';
export { createSupervisor, DEFAULT_WORKER_ENTRY, type Supervisor, type SupervisorDeps } from './supervisor.js';
