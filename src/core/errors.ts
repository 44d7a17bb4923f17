// One base class for every error that is the user's to fix (a bad file, flag, dataset or
// directory): the CLI prints its message and exits 2, with no stack trace. Anything else that
// escapes is a bug, and the CLI says so.

/**
 * The base of every error about the user's input, flags or files: the CLI prints its message
 * alone and exits 2.
 */
export class VitfoldError extends Error {
  override name = 'VitfoldError';
}

/** Node's errno codes that mean "this path cannot be used as asked": the user's to fix. */
const FS_CODES: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EISDIR: 'is a directory',
  ENOTDIR: 'a part of the path is not a directory',
  EEXIST: 'already exists',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'read-only file system',
  EMFILE: 'too many open files',
  ENAMETOOLONG: 'file name too long',
  ELOOP: 'too many levels of symbolic links',
  EXDEV: 'cannot move across file systems',
  EBUSY: 'resource busy',
  ENOTEMPTY: 'directory not empty',
  EIO: 'input/output error',
};

/**
 * A filesystem error (ENOSPC, EISDIR, EROFS, ...) as a user error naming the operation and the
 * path; null for anything else.
 */
export function fileSystemError(e: unknown): VitfoldError | null {
  // Node's ErrnoException, typed structurally: core/ is browser-safe and has no Node types.
  const err = e as { code?: unknown; syscall?: string; path?: string } | undefined;
  if (!err || typeof err !== 'object' || typeof err.code !== 'string' || !(err.code in FS_CODES)) return null;
  const op = err.syscall ? `${err.syscall} ` : '';
  const path = err.path ?? '';
  const dest = (err as { dest?: string }).dest;
  return new VitfoldError(`cannot ${op}${path}${dest ? ` -> ${dest}` : ''}: ${FS_CODES[err.code as string]} (${err.code})`);
}
