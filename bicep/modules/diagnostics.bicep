// Diagnostic settings: every service of the stack sends its resource logs and
// platform metrics to the stack's own Log Analytics workspace (same geography).
//
// One file for all of them, over `existing` references, so the service modules
// stay about their service; tests/unit/bicep/test_bicep_monitoring.py checks
// that every service resource deployed anywhere in bicep/ has its setting here.
// Logs by category group `allLogs` (new categories are picked up without a
// template change); metrics as `AllMetrics`. Cosmos DB and Event Hubs write to
// resource-specific tables (`Dedicated`), which are cheaper to query.
// Storage accounts take metrics at the account level and logs per service.

@description('Resource id of the Log Analytics workspace.')
param workspaceId string

param cosmosAccountName string

param eventHubNamespaceName string

param keyVaultName string

@description('The export vault (the tenants\' export keys; warehouses unwrap there).')
param exportVaultName string

@description('The data storage account (exports, audit archive).')
param dataStorageName string

@description('The host storage account (AzureWebJobsStorage, the deployment package).')
param hostStorageName string

param functionAppName string

@description('Web PubSub service name (GraphQL subscriptions on Azure).')
param webPubSubName string

var settingName = 'to-log-analytics'
var allLogs = [
  {
    categoryGroup: 'allLogs'
    enabled: true
  }
]
var allMetrics = [
  {
    category: 'AllMetrics'
    enabled: true
  }
]

resource cosmos 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' existing = {
  name: cosmosAccountName
}

resource eventHubs 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: eventHubNamespaceName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource dataStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: dataStorageName
}

resource dataBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: dataStorage
  name: 'default'
}

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageName
}

resource hostBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: hostStorage
  name: 'default'
}

resource hostQueues 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: hostStorage
  name: 'default'
}

resource hostTables 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' existing = {
  parent: hostStorage
  name: 'default'
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource webPubSub 'Microsoft.SignalRService/webPubSub@2024-03-01' existing = {
  name: webPubSubName
}

resource webPubSubDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: settingName
  scope: webPubSub
  properties: {
    workspaceId: workspaceId
    logs: allLogs
    metrics: allMetrics
  }
}

resource cosmosDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: settingName
  scope: cosmos
  properties: {
    workspaceId: workspaceId
    logAnalyticsDestinationType: 'Dedicated'
    logs: allLogs
    metrics: allMetrics
  }
}

resource eventHubsDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: settingName
  scope: eventHubs
  properties: {
    workspaceId: workspaceId
    logAnalyticsDestinationType: 'Dedicated'
    logs: allLogs
    metrics: allMetrics
  }
}

resource exportVault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: exportVaultName
}

// Every unwrap by a warehouse is in the export vault's audit log.
resource exportVaultDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: settingName
  scope: exportVault
  properties: {
    workspaceId: workspaceId
    logs: allLogs
    metrics: allMetrics
  }
}

resource vaultDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: settingName
  scope: vault
  properties: {
    workspaceId: workspaceId
    logs: allLogs
    metrics: allMetrics
  }
}

// Account level: metrics only (storage accounts have no resource logs of their own).
resource dataStorageDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: settingName
  scope: dataStorage
  properties: {
    workspaceId: workspaceId
    metrics: allMetrics
  }
}

resource dataBlobsDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: settingName
  scope: dataBlobs
  properties: {
    workspaceId: workspaceId
    logs: allLogs
    metrics: allMetrics
  }
}

resource hostStorageDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: settingName
  scope: hostStorage
  properties: {
    workspaceId: workspaceId
    metrics: allMetrics
  }
}

resource hostBlobsDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: settingName
  scope: hostBlobs
  properties: {
    workspaceId: workspaceId
    logs: allLogs
    metrics: allMetrics
  }
}

resource hostQueuesDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: settingName
  scope: hostQueues
  properties: {
    workspaceId: workspaceId
    logs: allLogs
    metrics: allMetrics
  }
}

resource hostTablesDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: settingName
  scope: hostTables
  properties: {
    workspaceId: workspaceId
    logs: allLogs
    metrics: allMetrics
  }
}

resource functionAppDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: settingName
  scope: functionApp
  properties: {
    workspaceId: workspaceId
    logs: allLogs
    metrics: allMetrics
  }
}
