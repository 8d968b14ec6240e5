// The key-manager identity: a user-assigned managed identity that may create,
// rotate and recover keys in the stack's vault, and nothing else. The Function App
// carries it beside its own system-assigned identity, but the code authenticates
// as it only for tenant provisioning and KEK rotation (KEYVAULT_MANAGEMENT_CLIENT_ID,
// shared/keys/keyvault.py); every request's wrap and unwrap use the app's own
// identity, which holds Key Vault Crypto User only (roles.bicep).
//
// Key Vault Crypto Officer, scoped to this vault: key management without secrets,
// certificates or role administration. It includes deleting a key, but the vault's
// purge protection keeps a deleted key recoverable for its 90-day retention.

param location string

@description('Name of the user-assigned identity.')
param identityName string

param keyVaultName string

param tags object

// Built-in role definition id (the same in every Azure tenant).
var roleIds = {
  keyVaultCryptoOfficer: '14b46e9e-c2b7-41b4-b07b-48a6ebf60603'
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: identityName
  location: location
  tags: tags
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

// Create, rotate and recover the tenants' key-encryption keys in this vault only.
resource keyOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, identity.id, roleIds.keyVaultCryptoOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.keyVaultCryptoOfficer)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

output id string = identity.id
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
