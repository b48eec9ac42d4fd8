package main

import "github.com/spf13/cobra"

func newStoreCommand(env *cliEnv) *cobra.Command {
	return newGroupCommand("store", "back up and restore the CA's store", `  signet store backup --out signet-backup.db
  signet store restore --from signet-backup.db --data-dir /var/lib/signet-restored`,
		newStoreBackupCommand(env),
		newStoreRestoreCommand(env),
		newStoreMigrateCommand(env),
	)
}
