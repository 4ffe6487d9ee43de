// File upload, behind this one function. Browsers cannot send the
// client-streaming Rooms.UploadAttachment, so files go up in unary parts
// (Rooms.UploadPart): the first part opens the upload, every part carries the
// bytes after those the node says it has, the last stores the file.
import { api } from "./api";
import type { Attachment } from "./gen/works/client/v1/client_pb";

/** The node takes at most 256 KiB per part. */
export const PART_BYTES = 256 * 1024;

/**
 * Uploads a file for a room and returns the stored attachment, to post with
 * SendMessage's attachment_id. onProgress receives the bytes the node has.
 */
export async function uploadAttachment(
  roomId: string,
  file: File,
  onProgress: (received: number) => void,
): Promise<Attachment> {
  const size = BigInt(file.size);
  const slice = async (from: bigint) =>
    new Uint8Array(await file.slice(Number(from), Number(from) + PART_BYTES).arrayBuffer());

  const firstData = await slice(0n);
  let last = BigInt(firstData.length) === size;
  let response = await api.rooms.uploadPart({
    roomId,
    name: file.name,
    contentType: file.type || "application/octet-stream",
    size,
    offset: 0n,
    data: firstData,
    last,
  });
  const uploadId = response.uploadId;
  onProgress(Number(response.received));
  while (!last) {
    const offset = response.received;
    const data = await slice(offset);
    last = offset + BigInt(data.length) >= size;
    response = await api.rooms.uploadPart({ uploadId, offset, data, last });
    onProgress(Number(response.received));
  }
  if (!response.attachment) throw new Error("the node stored no attachment");
  return response.attachment;
}
