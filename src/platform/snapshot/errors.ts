/** Why an image cannot be used (truncated, corrupt, another version or topology): the message says which. */
export class SnapshotError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SnapshotError';
  }
}
