import { describe, expect, it } from 'vitest';
import { loginNameOf, rolesToTry } from '../../src/restore/restored-server-client.js';

describe('who a restore connects to its restored server as', () => {
  const passwd = 'root:x:0:0:root:/root:/bin/bash\npgadmin:x:1001:1001::/home/pgadmin:/bin/sh\npostgres:x:105:110::/var/lib/postgresql:/bin/bash\n';
  it('names the data directory owner from /etc/passwd', () => {
    expect(loginNameOf(1001, passwd)).toBe('pgadmin');
    expect(loginNameOf(105, passwd)).toBe('postgres');
    expect(loginNameOf(4242, passwd)).toBeUndefined();
    // A uid that is only a prefix of another's is not it.
    expect(loginNameOf(10, passwd)).toBeUndefined();
  });
  it('tries the owner\'s role first, then postgres, each once', () => {
    expect(rolesToTry('pgadmin')).toEqual(['pgadmin', 'postgres']);
    expect(rolesToTry('postgres')).toEqual(['postgres']);
    expect(rolesToTry(undefined)).toEqual(['postgres']);
  });
});
