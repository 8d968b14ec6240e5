// Uses the TypeScript types openapi-typescript generates from docs/openapi-v1.json
// (written next to this file as ./accrue.ts by tests/e2e/test_generated_clients.py).
// `tsc --noEmit` must accept it: the README's walkthrough, typed. The @ts-expect-error
// lines fail the check if the types were too loose (e.g. `any` or an open string).
import type { components, operations, paths } from "./accrue";

type Order = paths["/v1/orders"]["post"]["requestBody"]["content"]["application/json"];
type OrderStatus = components["schemas"]["OrderStatus"];
type Queued = operations["orders.send"]["responses"][202]["content"]["application/json"];
type Invalid = operations["orders.send"]["responses"][422]["content"]["application/problem+json"];
type Missing = operations["orders.get"]["responses"][404]["content"]["application/problem+json"];
type Balance = operations["customers.balance"]["responses"][200]["content"]["application/json"];
type LedgerPage = operations["customers.ledger"]["responses"][200]["content"]["application/json"];
type Refund = operations["orders.refund"]["responses"][201]["content"]["application/json"];
type Adjustment = operations["customers.adjust"]["requestBody"]["content"]["application/json"];

export const order: Order = {
  customerId: "alice-42", orderId: "ord-1001", amount: "24.90", currency: "EUR",
  timestamp: "2026-11-23T09:30:00Z", channel: "store",
  items: [{ sku: "LATTE-M", category: "coffee", quantity: 3, unitPrice: "3.60" }],
};

export function outcome(status: Queued | OrderStatus): string {
  switch (status.status) {
    case "queued": return `queued, see ${status.statusUrl}`;
    case "credited": return `${status.points ?? 0} points`;
    case "held": return `held: ${status.reason?.code ?? "review"}`;
    case "rejected": return `rejected: ${status.reason?.detail ?? ""}`;
    default: {
      const never: never = status.status;
      return never;
    }
  }
}

export function fields(problem: Invalid | Missing): string[] {
  return (problem.errors ?? []).map((e) => `${e.field}: ${e.message} (${problem.status} ${problem.type})`);
}

export function spendable(balance: Balance): number {
  return balance.available - balance.reserved;
}

export function nextCursor(page: LedgerPage): string | null {
  return page.items[0]?.entryType === "EARN" ? page.next : null;
}

export function clawedBack(refund: Refund): number {
  return refund.duplicate ? 0 : refund.pointsClawedBack;
}

export const adjustment: Adjustment = {
  points: 100, reasonCode: "goodwill", reason: "late delivery", idempotencyKey: "adj-2026-11-23-1",
};

// @ts-expect-error: an order's status is one of four
export const lost: OrderStatus["status"] = "lost";
// @ts-expect-error: the reason code of an adjustment is a closed set
export const whim: Adjustment["reasonCode"] = "whim";
// @ts-expect-error: points are a number, not a string
export const text: Balance["available"] = "12";
