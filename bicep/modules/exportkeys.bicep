// The export vault: the tenants' export keys (export-<tenant>), apart from the vault of the
// keys that protect personal data (keyvault.bicep), so a warehouse's role and network path
// reach export keys only (issue 18, docs/exports.md).
//
// * The app wraps with them (Key Vault Crypto User on this vault); the key-manager identity
//   creates and rotates them (Crypto Officer on this vault); neither role is on the other vault
//   because of this module.
// * Each warehouse identity gets Key Vault Crypto Service Encryption User (read key, wrap,
//   unwrap) scoped to ITS tenant's export key only: it decrypts that tenant's export files with
//   the Azure Storage SDK's client-side encryption and no Accrue code, and nothing else.
// * Network: with private networking the vault has no public access except the warehouses'
//   own addresses (warehouseIpRules); a warehouse in Azure instead creates a private endpoint to
//   this vault in its own VNet (group id 'vault'), which an operator approves (docs/exports.md).
// * Rotation: a new key version becomes current; files keep the kid of the version that wrapped
//   their content key, and older versions stay enabled, so files already written keep decrypting.

param location string

@description('Export vault name (globally unique, 3-24 characters).')
param vaultName string

@allowed([
  'standard'
  'premium'
])
param skuName string

param recover bool = false

param privateNetworking bool

@description('Principal id of the Function App (wraps content keys with the export keys).')
param appPrincipalId string

@description('Principal id of the key-manager identity (creates and rotates export keys).')
param keyManagerPrincipalId string

@description('Warehouses: [{tenantId, principalId}]; each may unwrap its tenant\'s export key only.')
param warehouseAccess array

@description('Public IPv4 ranges (CIDR) of warehouses that reach the vault over the internet; empty: private endpoints only.')
param warehouseIpRules array

param tags object

var roleIds = {
  keyVaultCryptoUser: '12338af0-0e69-4776-bea7-57ae8d297424'
  keyVaultCryptoOfficer: '14b46e9e-c2b7-41b4-b07b-48a6ebf60603'
  keyVaultCryptoServiceEncryptionUser: 'e147488a-f6f5-4113-8e2d-b22465e65bf6'
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: vaultName
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    createMode: recover ? 'recover' : 'default'
    sku: {
      family: 'A'
      name: skuName
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForTemplateDeployment: false
    enabledForDiskEncryption: false
    publicNetworkAccess: privateNetworking && empty(warehouseIpRules) ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: privateNetworking ? 'Deny' : 'Allow'
      bypass: 'AzureServices'
      ipRules: [for range in warehouseIpRules: {
        value: range
      }]
    }
  }
}

resource appCrypto 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, appPrincipalId, roleIds.keyVaultCryptoUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.keyVaultCryptoUser)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource keyOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, keyManagerPrincipalId, roleIds.keyVaultCryptoOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.keyVaultCryptoOfficer)
    principalId: keyManagerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The export key of each warehouse's tenant, named as shared/keys/keyvault.py key_name(t, 'export')
// does ('-', '.', '_' escaped). Keys - Create If Not Exist: an existing key is left as it is.
resource exportKeys 'Microsoft.KeyVault/vaults/keys@2023-07-01' = [for access in warehouseAccess: {
  parent: vault
  name: 'export-${replace(replace(replace(access.tenantId, '-', '-2d'), '.', '-2e'), '_', '-5f')}'
  properties: {
    kty: skuName == 'premium' ? 'RSA-HSM' : 'RSA'
    keySize: 3072
    keyOps: [
      'wrapKey'
      'unwrapKey'
    ]
  }
}]

// Scoped to the one key: the warehouse reads, wraps and unwraps with its tenant's export key only.
resource warehouseUnwrap 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (access, i) in warehouseAccess: {
  name: guid(exportKeys[i].id, access.principalId, roleIds.keyVaultCryptoServiceEncryptionUser)
  scope: exportKeys[i]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.keyVaultCryptoServiceEncryptionUser)
    principalId: access.principalId
    principalType: 'ServicePrincipal'
  }
}]

output vaultName string = vault.name
output uri string = vault.properties.vaultUri
