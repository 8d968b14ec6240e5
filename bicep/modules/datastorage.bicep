// Storage for the product's blobs: nightly warehouse exports and the audit archive.
//
// Separate from the Functions host's storage so that the host's broad rights
// (Blob Data Owner there) never reach exports or the archive. Shared keys are
// off: every caller uses Entra ID. Locally redundant within the region's zones
// (ZRS) by default; geo-redundant SKUs are not offered because their secondary
// is the Azure-chosen paired region, not one the parameter files name.

param location string

@description('Storage account name (globally unique, 3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param accountName string

@allowed([
  'Standard_ZRS'
  'Standard_LRS'
])
param skuName string

param exportsContainerName string

param auditContainerName string

@description('Import files (docs/imports.md): uploaded through a short-lived SAS, deleted by lifecycle after a week (a customers file holds personal data in the clear).')
param importsContainerName string = 'imports'

@description('Days an export blob is kept before lifecycle management deletes it.')
@minValue(1)
param exportsRetentionDays int

@description('Time-based retention of the audit archive, in days (7 years = 2555).')
@minValue(2555)
param auditRetentionDays int = 2555

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
  properties: {
    isVersioningEnabled: true
    deleteRetentionPolicy: {
      enabled: true
      days: 30
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 30
    }
  }
}

resource exportsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: exportsContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource importsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: importsContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource auditContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: auditContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Container-level WORM: nothing written to the audit archive can be changed or
// deleted for 7 years. ARM creates the policy unlocked; locking it is a separate,
// irreversible operator step (docs/deploy.md) once the stack is verified.
resource auditImmutability 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@2023-05-01' = {
  parent: auditContainer
  name: 'default'
  properties: {
    immutabilityPeriodSinceCreationInDays: auditRetentionDays
    // The blob adapter writes whole block blobs (If-None-Match: *), never appends.
    allowProtectedAppendWrites: false
  }
}

// Exports are re-creatable from the ledger: cool them after a month, delete them
// after the retention, and drop superseded versions. Only the exports prefix is
// matched; the audit archive is never touched by lifecycle rules.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          enabled: true
          name: 'exports-retention'
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${exportsContainerName}/'
              ]
            }
            actions: {
              baseBlob: {
                tierToCool: {
                  daysAfterModificationGreaterThan: 30
                }
                delete: {
                  daysAfterModificationGreaterThan: exportsRetentionDays
                }
              }
              version: {
                delete: {
                  daysAfterCreationGreaterThan: 30
                }
              }
            }
          }
        }
        {
          enabled: true
          name: 'imports-retention'
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${importsContainerName}/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: 7
                }
              }
              version: {
                delete: {
                  daysAfterCreationGreaterThan: 1
                }
              }
            }
          }
        }
      ]
    }
  }
  dependsOn: [
    exportsContainer
    importsContainer
  ]
}

output accountName string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
output exportsContainerName string = exportsContainer.name
output auditContainerName string = auditContainer.name
output importsContainerName string = importsContainer.name
