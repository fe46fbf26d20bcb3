// How the KV service spreads keys over its Raft groups. Every node must compute the same
// group for a key, so the hash is fixed (32-bit FNV-1a over the key's UTF-8 bytes).

const encoder = new TextEncoder();

export function groupName(index: number): string {
  return `kv_${index}`;
}

export function groupOfKey(key: string, groups: number): number {
  let hash = 0x811c9dc5;
  for (const byte of encoder.encode(key)) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % groups;
}
