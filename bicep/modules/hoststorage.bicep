// The Functions host's own storage: trigger checkpoints and leases, host locks,
// diagnostic events, and (Flex Consumption) the deployment package container.
// Identity-based only: the app reaches it through AzureWebJobsStorage__accountName
// and its managed identity, and deployment storage authenticates the same way.

param location string

@minLength(3)
@maxLength(24)
param accountName string

@allowed([
  'Standard_ZRS'
  'Standard_LRS'
])
param skuName string

@description('Blob container holding the deployed app package (Flex Consumption).')
param deploymentContainerName string

param privateNetworking bool

param tags object

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: accountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: privateNetworking ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: privateNetworking ? 'Deny' : 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

output accountName string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
output deploymentContainerName string = deploymentContainer.name
