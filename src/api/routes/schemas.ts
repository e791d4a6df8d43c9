/** Request schemas shared by the routes (responses are documented loosely: they are model objects). */
import { Type } from 'typebox';
import { PortSchema, VolumeSchema, ResourcesSchema, RestartSchema } from '../../model/index.ts';

/** `?wait=true&timeoutMs=…` */
export const WaitQuery = Type.Object({
  wait: Type.Optional(Type.Boolean()),
  timeoutMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 3_600_000 })),
});

/** Body of POST /v1/containers. */
export const CreateBody = Type.Object({
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 63 })),
  image: Type.String({ minLength: 1 }),
  entrypoint: Type.Optional(Type.Array(Type.String())),
  command: Type.Optional(Type.Array(Type.String())),
  env: Type.Optional(Type.Array(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*=' }))),
  workdir: Type.Optional(Type.String()),
  user: Type.Optional(Type.String()),
  ports: Type.Optional(Type.Array(PortSchema)),
  volumes: Type.Optional(Type.Array(VolumeSchema)),
  resources: Type.Optional(ResourcesSchema),
  restart: Type.Optional(RestartSchema),
  state: Type.Optional(Type.Union([Type.Literal('running'), Type.Literal('stopped')])),
  node: Type.Optional(Type.String()),
  labels: Type.Optional(Type.Record(Type.String(), Type.String())),
}, { additionalProperties: false });

/** Body of PATCH /v1/containers/:name. */
export const PatchBody = Type.Object({
  resources: Type.Optional(ResourcesSchema),
  restart: Type.Optional(RestartSchema),
}, { additionalProperties: false });

/** `:name` */
export const NameParams = Type.Object({ name: Type.String({ minLength: 1 }) });

/** Body of POST /v1/containers/:name/exec. */
export const ExecBody = Type.Object({
  args: Type.Array(Type.String(), { minItems: 1 }),
  env: Type.Optional(Type.Array(Type.String())),
  cwd: Type.Optional(Type.String()),
  /** Standard input, base64. */
  stdin: Type.Optional(Type.String()),
}, { additionalProperties: false });
