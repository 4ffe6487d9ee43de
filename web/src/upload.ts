// File upload, behind this one function. Browsers cannot send the
// client-streaming Rooms.UploadAttachment, so the node is to offer a unary,
// chunked upload call for them; it plugs in here.
import type { Attachment } from "./gen/works/client/v1/client_pb";
import { t } from "./i18n";

export const CHUNK_BYTES = 256 * 1024;

export class UploadUnavailable extends Error {}

/**
 * Uploads a file for a room and returns the stored attachment, to post with
 * SendMessage's attachment_id. onProgress receives the bytes sent so far.
 */
export async function uploadAttachment(
  _roomId: string,
  _file: File,
  _onProgress: (sent: number) => void,
): Promise<Attachment> {
  throw new UploadUnavailable(t("File upload is not available on this node"));
}
