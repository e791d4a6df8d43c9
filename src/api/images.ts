/** Image views on the manager: each agent reports its node's images; the manager answers from those reports. */
import type { Store } from '../store/index.ts';
import type { ImageView, NodeImages } from '../model/index.ts';
import { keys, findImage } from '../model/index.ts';


/** Every image on every node, merged by id. */
export async function listImages(store: Store): Promise<ImageView[]> {
  const { items } = await store.list<NodeImages>(keys.images);
  const byId = new Map<string, ImageView>();
  for (const { value } of items) {
    for (const img of value.images) {
      const seen = byId.get(img.id);
      if (seen) {
        seen.nodes.push(value.node);
        for (const t of img.tags) if (!seen.tags.includes(t)) seen.tags.push(t);
      } else byId.set(img.id, { ...img, tags: [...img.tags], nodes: [value.node] });
    }
  }
  return [...byId.values()].sort((a, b) => b.created.localeCompare(a.created));
}

/** The image `ref` names, or undefined. */
export async function findImageView(store: Store, ref: string): Promise<ImageView | undefined> {
  return findImage(await listImages(store), ref);
}

/** True when some node holds the image `ref` names. */
export async function imageExists(store: Store, ref: string): Promise<boolean> {
  return (await findImageView(store, ref)) !== undefined;
}
