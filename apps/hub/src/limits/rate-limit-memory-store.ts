import type { Plan, StoreResult } from './rate-limit-decision.js';

/** The same semantics as the CHECK script, on this process's memory. Synchronous, hence atomic. */
export class MemoryStore {
  /** key id → window key → {count, end of the window ms} */
  private readonly windows = new Map<string, Map<string, { count: number; endMs: number }>>();
  /** key id → call id → slot expiry ms */
  private readonly slots = new Map<string, Map<string, number>>();

  apply(p: Plan): StoreResult {
    const own = this.windows.get(p.keyId);
    const counts = p.windows.map((w) => {
      const entry = own?.get(w.key);
      return entry && entry.endMs > p.nowMs ? entry.count : 0;
    });
    let allowed = p.windows.every((w, i) => (counts[i] ?? 0) < w.limit);
    let slots = this.slots.get(p.keyId);
    let held = 0;
    if (p.cap > 0) {
      if (slots) for (const [id, expiry] of slots) if (expiry <= p.nowMs) slots.delete(id);
      held = slots?.size ?? 0;
      if (held >= p.cap) allowed = false;
    }
    if (!allowed) return { allowed, held, counts };
    let map = own;
    if (!map) {
      map = new Map();
      this.windows.set(p.keyId, map);
    }
    p.windows.forEach((w, i) => {
      const count = (counts[i] ?? 0) + 1;
      counts[i] = count;
      map.set(w.key, { count, endMs: w.endMs });
    });
    if (p.cap > 0) {
      if (!slots) {
        slots = new Map();
        this.slots.set(p.keyId, slots);
      }
      slots.set(p.callId, p.slotExpiryMs);
      held += 1;
    }
    return { allowed, held, counts };
  }

  release(keyId: string, callId: string): void {
    const slots = this.slots.get(keyId);
    if (!slots) return;
    slots.delete(callId);
    if (slots.size === 0) this.slots.delete(keyId);
  }

  reset(keyId: string): void {
    this.windows.delete(keyId);
    this.slots.delete(keyId);
  }

  /** Drops expired counters and slots, so a long outage does not grow memory without bound. */
  sweep(nowMs: number): void {
    for (const [keyId, map] of this.windows) {
      for (const [key, entry] of map) if (entry.endMs <= nowMs) map.delete(key);
      if (map.size === 0) this.windows.delete(keyId);
    }
    for (const [keyId, slots] of this.slots) {
      for (const [id, expiry] of slots) if (expiry <= nowMs) slots.delete(id);
      if (slots.size === 0) this.slots.delete(keyId);
    }
  }

  clear(): void {
    this.windows.clear();
    this.slots.clear();
  }
}
