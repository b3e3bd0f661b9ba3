/** The public form of a passkey (what the API lists): never the key, counter or credential id. */
import type { PasskeyRow } from '../../db/repositories/passkeys/credentials.ts';

/** A passkey as the API shows it. */
export interface PasskeyView {
  id: string;
  name: string;
  created_at: string;
  last_used_at: string | null;
  /** Backed up (synced to other devices) right now. */
  backed_up: boolean;
  /** `multi_device` (may be synced) or `single_device` (bound to one authenticator). */
  device_type: 'multi_device' | 'single_device';
  transports: string[];
}

/** Maps a row (or the parts of one) to its view. */
export function passkeyView(row: Pick<PasskeyRow, 'id' | 'name' | 'created_at' | 'last_used_at' | 'backed_up' | 'device_type' | 'transports'>): PasskeyView {
  return {
    id: row.id,
    name: row.name,
    created_at: row.created_at.toISOString(),
    last_used_at: row.last_used_at ? row.last_used_at.toISOString() : null,
    backed_up: row.backed_up,
    device_type: row.device_type === 'multiDevice' ? 'multi_device' : 'single_device',
    transports: [...row.transports],
  };
}
