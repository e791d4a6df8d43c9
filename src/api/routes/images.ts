/** /v1/images: the images the nodes hold; import spools the upload once and sends it to each node. */
import { createWriteStream, createReadStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { ApiDeps } from '../server.ts';
import { apiErrors } from '../errors.ts';
import { listImages, findImageView } from '../images.ts';
import { listContainers } from '../containers.ts';
import { listNodes } from '../nodes.ts';
import { agentOfNode } from '../agents.ts';
import { findImage } from '../../model/index.ts';

const RefParams = Type.Object({ ref: Type.String({ minLength: 1 }) });

/** Image routes. */
export function imageRoutes(deps: ApiDeps): FastifyPluginAsync {
  return async (base) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    const { store } = deps;

    app.get('/images', { schema: { summary: 'List images on all nodes' } }, async () => listImages(store));

    app.get('/images/:ref', { schema: { summary: 'Inspect an image', params: RefParams } }, async (req) => {
      const img = await findImageView(store, req.params.ref);
      if (!img) throw apiErrors.IMAGE_NOT_FOUND({ image: req.params.ref });
      return img;
    });

    app.delete('/images/:ref', {
      schema: { summary: 'Remove an image (or one tag of it) from every node', params: RefParams, querystring: Type.Object({ force: Type.Optional(Type.Boolean()) }) },
    }, async (req, reply) => {
      const img = await findImageView(store, req.params.ref);
      if (!img) throw apiErrors.IMAGE_NOT_FOUND({ image: req.params.ref });
      const all = await listImages(store);
      const users = (await listContainers(store)).filter((v) => findImage(all, v.container.spec.image)?.id === img.id);
      const removesImage = img.tags.length <= 1 || req.params.ref.startsWith('sha256:') || !req.params.ref.includes(':') && /^[0-9a-f]{6,}$/.test(req.params.ref);
      if (users.length > 0 && removesImage && !req.query.force) {
        throw apiErrors.BAD_REQUEST({ reason: `image ${req.params.ref} is used by container(s) ${users.map((u) => u.container.metadata.name).join(', ')}; remove them first or use --force` });
      }
      for (const node of img.nodes) await (await agentOfNode(deps, node)).removeImage(req.params.ref, req.query.force === true);
      return reply.status(204).send();
    });

    app.post('/images/import', {
      schema: {
        summary: 'Import an image archive (OCI layout tar, oci-archive, docker-archive, or rootfs tar) to every ready node, or one',
        querystring: Type.Object({ name: Type.Optional(Type.String()), node: Type.Optional(Type.String()) }),
      },
      bodyLimit: 64 * 1024 ** 3,
    }, async (req) => {
      const targets = req.query.node
        ? [req.query.node]
        : (await listNodes(store)).filter((n) => n.state === 'Ready').map((n) => n.node.metadata.name);
      if (targets.length === 0) throw apiErrors.NO_NODE({ reason: 'no node is ready to receive the image' });
      await mkdir(deps.spoolDir, { recursive: true });
      const spool = join(deps.spoolDir, `import-${randomUUID()}.tar`);
      try {
        if (!req.body || typeof (req.body as Readable).pipe !== 'function') throw apiErrors.BAD_REQUEST({ reason: 'send the archive as application/octet-stream' });
        await pipeline(req.body as Readable, createWriteStream(spool));
        let id = '';
        for (const node of targets) {
          const agent = await agentOfNode(deps, node);
          const rec = await agent.importImage(createReadStream(spool), req.query.name);
          id = rec.id;
        }
        const img = await findImageView(store, id);
        if (!img) throw apiErrors.IMAGE_NOT_FOUND({ image: id });
        return img;
      } finally {
        await rm(spool, { force: true });
      }
    });
  };
}
