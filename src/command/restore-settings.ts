/**
 * The restore parameters of a physical restore, read once where a command starts
 * (`pgbacula restore`, the Bacula restore of mode pitr) into the options the restore code takes.
 */
import { getBool, getInt, getList, getString, type ParamMap } from '../config/params.js';
import { PgbaculaError } from '../errors.js';
import type { RecoveryTarget } from '../restore/recovery-settings.js';
import type { RestoreOptions } from '../restore/repo-restore.js';

const TARGET_KINDS = [['target_lsn', 'lsn'], ['target_time', 'time'], ['target_xid', 'xid'], ['target_name', 'name']] as const;

/**
 * The stop point asked for. One only: PostgreSQL itself refuses several recovery_target_*
 * settings, and quietly preferring one would restore to a point the operator did not choose.
 */
export function recoveryTargetOf(params: ParamMap): RecoveryTarget | undefined {
  const given = TARGET_KINDS.filter(([name]) => params.has(name));
  if (given.length > 1) {
    throw new PgbaculaError('PARAM_INVALID', `two recovery targets given: ${given.map(([name]) => `${name}=${getString(params, name)}`).join(' and ')}`, {
      hint: 'Give one of target_time, target_lsn, target_xid or target_name.',
    });
  }
  const [one] = given;
  return one === undefined ? undefined : { kind: one[1], value: getString(params, one[0])! };
}

export function restoreOptionsOf(params: ParamMap): RestoreOptions {
  return {
    target: recoveryTargetOf(params),
    pgdataDir: getString(params, 'pgdata_dir'),
    overwriteExisting: getBool(params, 'overwrite_existing'),
    pgBinDir: getString(params, 'pg_bin_dir'),
    restorePort: params.has('restore_port') ? getInt(params, 'restore_port') : undefined,
    remapTablespaces: getList(params, 'remap_tablespace'),
    skipWalReplay: getBool(params, 'skip_wal_replay'),
    restoreAsStandby: getBool(params, 'restore_as_standby'),
    primaryConninfo: params.has('primary_conninfo') ? getString(params, 'primary_conninfo') : undefined,
    standbyName: params.has('standby_name') ? getString(params, 'standby_name') : undefined,
    recreateSlots: getBool(params, 'recreate_replication_slots'),
    recreateSubscriptions: getBool(params, 'recreate_subscriptions'),
    action: getString(params, 'recovery_target_action') as RestoreOptions['action'],
    archiveAfterRestore: getBool(params, 'archive_after_restore'),
    walSpool: getString(params, 'wal_spool')!,
    walFromSpool: getBool(params, 'wal_from_spool'),
  };
}
