// Key Vault for the tenants' key-encryption keys (wrap/unwrap of per-customer DEKs).
// RBAC authorisation only (no access policies), soft delete and purge protection:
// losing a KEK loses every customer's personal data under it.

param location string

@description('Key Vault name (globally unique, 3-24 characters).')
param vaultName string

@description('premium keeps keys in HSMs; standard uses software-protected keys.')
@allowed([
  'standard'
  'premium'
])
param skuName string

@description('Recover a soft-deleted vault of this name (a stack recreated within the 90-day retention).')
param recover bool = false

param privateNetworking bool

param tags object

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: vaultName
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    // Purge protection forbids purging a deleted vault, so its name stays taken for the
    // retention: recreating the stack recovers it (keys included) rather than failing.
    createMode: recover ? 'recover' : 'default'
    sku: {
      family: 'A'
      name: skuName
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    // Irreversible once on: a deleted vault or key cannot be purged before retention ends.
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForTemplateDeployment: false
    enabledForDiskEncryption: false
    publicNetworkAccess: privateNetworking ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: privateNetworking ? 'Deny' : 'Allow'
      bypass: 'AzureServices'
    }
  }
}

output vaultName string = vault.name
output uri string = vault.properties.vaultUri
