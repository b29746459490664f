/**
 * SageMaker's model artifact: a gzipped tar whose root holds the files the serving container
 * finds under /opt/ml/model (here model.json, weights.bin, metadata.json).
 */
import { gunzipSync, gzipSync } from 'node:zlib';

export interface ArchiveFile {
  name: string;
  bytes: Uint8Array;
}

const BLOCK = 512;

/** A POSIX ustar archive, gzipped. Deterministic: fixed mtime, mode and owner. */
export function packModelArchive(files: ArchiveFile[]): Buffer {
  const parts: Buffer[] = [];
  for (const file of files) {
    if (!/^[\w.-]{1,100}$/.test(file.name)) throw new Error(`packModelArchive: unsupported file name '${file.name}'`);
    const header = Buffer.alloc(BLOCK);
    header.write(file.name, 0, 'utf8');
    header.write('0000644\0', 100); // mode
    header.write('0000000\0', 108); // uid
    header.write('0000000\0', 116); // gid
    header.write(file.bytes.byteLength.toString(8).padStart(11, '0') + '\0', 124);
    header.write('00000000000\0', 136); // mtime
    header.write('        ', 148); // checksum placeholder: eight spaces
    header.write('0', 156); // regular file
    header.write('ustar\0' + '00', 257);
    let sum = 0;
    for (const byte of header) sum += byte;
    header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    parts.push(header, Buffer.from(file.bytes), Buffer.alloc((BLOCK - (file.bytes.byteLength % BLOCK)) % BLOCK));
  }
  parts.push(Buffer.alloc(2 * BLOCK));
  return gzipSync(Buffer.concat(parts), { level: 6 });
}

/** The regular files of a gzipped tar (enough for our own archives and plain `tar czf` output). */
export function unpackModelArchive(archive: Uint8Array): ArchiveFile[] {
  const tar = gunzipSync(archive);
  const files: ArchiveFile[] = [];
  for (let offset = 0; offset + BLOCK <= tar.length;) {
    const header = tar.subarray(offset, offset + BLOCK);
    if (header.every((b) => b === 0)) break;
    const field = (start: number, length: number) =>
      header
        .subarray(start, start + length)
        .toString('utf8')
        .replace(/\0.*$/s, '');
    const prefix = field(345, 155);
    const name = (prefix ? `${prefix}/` : '') + field(0, 100);
    const size = parseInt(field(124, 12).trim() || '0', 8);
    const type = field(156, 1);
    offset += BLOCK;
    if (type === '0' || type === '') files.push({ name: name.replace(/^\.\//, ''), bytes: tar.subarray(offset, offset + size) });
    offset += Math.ceil(size / BLOCK) * BLOCK;
  }
  return files;
}
