/** The image store's error table; codes are `FERRY_ERR_<KEY>`. */
import { defineErrors } from '../../errors/index.ts';

/** Errors the image store throws. */
export const imageErrors = defineErrors({
  IMAGE_NOT_FOUND: { status: 404, message: 'image {ref} not found' },
  IMAGE_IN_USE: { status: 409, message: 'image {ref} is used by container(s) {containers}; release them first or force' },
  IMAGE_BAD_ARCHIVE: { status: 400, message: 'cannot import {source}: {reason}' },
  IMAGE_NAME_REQUIRED: { status: 400, message: 'importing {source} needs a name ({kind} sources carry none)' },
  IMAGE_AMBIGUOUS: { status: 409, message: '{ref} matches several images: {candidates}' },
  IMAGE_BAD_REF: { status: 400, message: 'bad image reference {ref}: {reason}' },
  IMAGE_BAD_CONTAINER_ID: { status: 400, message: 'bad container id {containerId}: use letters, digits, _ . - (at most 128)' },
  IMAGE_ROOTFS_FAILED: { status: 500, message: 'root filesystem for container {containerId} in {dir}: {reason}' },
  IMAGE_STORE_LOCKED: { status: 503, message: 'image store {root} is locked by another process (lock file {file})' },
  IMAGE_SAMPLE_UNAVAILABLE: { status: 500, message: 'cannot build the sample image: {reason}' },
});
