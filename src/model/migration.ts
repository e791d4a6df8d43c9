/** The Migration object at `/ferry/migrations/<id>`: what was asked, and the machine's progress. */
import { Type, type Static } from 'typebox';

const PhaseSchema = Type.Union([
  Type.Literal('Pending'), Type.Literal('Precheck'), Type.Literal('Prepare'), Type.Literal('Copy'), Type.Literal('Freeze'), Type.Literal('Transfer'), Type.Literal('Restore'),
  Type.Literal('Switch'), Type.Literal('Cleanup'), Type.Literal('Succeeded'), Type.Literal('RollingBack'), Type.Literal('RolledBack'), Type.Literal('Failed'),
]);

/** A migration as stored. */
export const MigrationSchema = Type.Object({
  apiVersion: Type.Literal('ferry/v1'),
  kind: Type.Literal('Migration'),
  metadata: Type.Object({ name: Type.String(), uid: Type.String(), createdAt: Type.String() }),
  spec: Type.Object({
    container: Type.String(),
    containerUid: Type.String(),
    from: Type.String(),
    to: Type.String(),
    strategy: Type.Union([Type.Literal('auto'), Type.Literal('stop-copy'), Type.Literal('pre-copy'), Type.Literal('post-copy')]),
    checkOnly: Type.Boolean(),
    /** `--bandwidth`: the most the transfer between the agents may use, bytes per second. */
    bandwidthBytesPerSec: Type.Optional(Type.Integer({ minimum: 1 })),
  }),
  status: Type.Object({
    phase: PhaseSchema,
    /** The strategy in use (auto resolved) and why. */
    strategy: Type.String(),
    strategyReason: Type.String(),
    round: Type.Integer(),
    history: Type.Array(Type.Object({ phase: Type.String(), at: Type.String(), message: Type.Optional(Type.String()) })),
    checks: Type.Array(Type.Object({ check: Type.String(), ok: Type.Boolean(), reason: Type.String() })),
    cancelRequested: Type.Boolean(),
    error: Type.Optional(Type.String()),
    failedIn: Type.Optional(Type.String()),
    /** Runtime id of the restored copy on the target. */
    targetRuntimeId: Type.Optional(Type.String()),
    bytes: Type.Integer(),
    /** Bytes on the target so far while Freeze/Restore move them; totalBytes = the container's memory + writable layer, estimated. */
    progress: Type.Optional(Type.Object({ bytes: Type.Integer(), totalBytes: Type.Optional(Type.Integer()), updatedAt: Type.String() })),
    freezeMs: Type.Optional(Type.Number()),
    totalMs: Type.Optional(Type.Number()),
    finishedAt: Type.Optional(Type.String()),
  }),
});
/** A migration as stored. */
export type Migration = Static<typeof MigrationSchema>;
