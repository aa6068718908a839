import { HubEnvSchema } from './hub-config.js';
import { SupervisorEnvSchema } from './supervisor-config.js';
import { WorkerOperatorEnvSchema } from './worker-config.js';

/** Every variable an operator may set (the worker's own are set by its supervisor); `.env.example` lists them all. */
export const OPERATOR_ENV_VARS: readonly string[] = Object.freeze([
  ...new Set([
    ...Object.keys(HubEnvSchema.shape),
    ...Object.keys(SupervisorEnvSchema.shape),
    ...Object.keys(WorkerOperatorEnvSchema.shape),
  ]),
]);
