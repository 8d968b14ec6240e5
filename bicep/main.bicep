// Accrue: one regional stack (US, EU or APAC) in one resource group.
//
//   az deployment group create -g <rg> -f bicep/main.bicep -p bicep/params/<region>.parameters.json
//
// Every resource is created in `location`, and the only other regions named are
// Cosmos DB replicas from `cosmosReplicaLocations`: a stack's data stays in its
// geography (tests/unit/bicep checks the EU file pins EU regions only).
//
// The names the code depends on (app settings, containers, hub, consumer group)
// are kept in this file and checked against shared/settings.py and
// shared/store/layout.py by tests/unit/bicep.

targetScope = 'resourceGroup'

@description('Azure region of the stack, e.g. westeurope.')
param location string

@description('Region label the code reports (ACCRUE_REGION).')
@allowed([
  'us'
  'eu'
  'apac'
])
param region string

@description('Prefix of every resource name, e.g. accrue-eu.')
@minLength(3)
@maxLength(12)
param namePrefix string

@description('Short suffix that makes global names unique; derived from the resource group by default.')
@maxLength(6)
param nameSuffix string = take(uniqueString(resourceGroup().id), 6)

@description('Cosmos DB read replicas in failover order; only regions of the stack\'s own geography.')
param cosmosReplicaLocations array = []

@description('Autoscale ceiling of the Cosmos DB database, RU/s.')
@minValue(1000)
param cosmosMaxThroughput int = 4000

@description('Zone-redundant Cosmos DB regions (not offered in every region).')
param cosmosZoneRedundant bool = true

@description('Partitions of the orders hub: the ingest trigger runs at most one instance per partition.')
@minValue(1)
@maxValue(32)
param eventHubPartitionCount int = 32

@minValue(1)
@maxValue(40)
param eventHubCapacity int = 1

@minValue(1)
@maxValue(40)
param eventHubMaxCapacity int = 4

@minValue(1)
@maxValue(7)
param eventHubRetentionDays int = 7

@minValue(40)
@maxValue(1000)
param functionMaximumInstanceCount int = 100

@allowed([
  512
  2048
  4096
])
param functionInstanceMemoryMB int = 2048

@description('Instances kept warm for the HTTP API.')
@minValue(0)
param functionAlwaysReadyHttp int = 1

@allowed([
  'standard'
  'premium'
])
param keyVaultSku string = 'premium'

@allowed([
  'Standard_ZRS'
  'Standard_LRS'
])
param storageSku string = 'Standard_ZRS'

@description('Days a warehouse export is kept.')
@minValue(1)
param exportsRetentionDays int = 90

@minValue(30)
@maxValue(730)
param logRetentionDays int = 90

@description('Private endpoints for Cosmos DB, Event Hubs, Key Vault and both storage accounts, public access off, and VNet integration of the Function App.')
param enablePrivateNetworking bool = true

@description('Address space of the stack\'s VNet (used with private networking).')
param vnetAddressPrefix string = '10.20.0.0/16'

param tags object = {}

// ---- names the code depends on ------------------------------------------------

// shared/store/layout.py: every container is partitioned on /pk.
var partitionKeyPath = '/pk'
var cosmosDatabaseName = 'accrue'
// The change-feed trigger's lease container. Created here because a trigger that
// connects with a managed identity cannot create it (that needs control-plane rights).
var leaseContainerName = 'leases'

// One entry per container of shared/store/layout.py CONTAINERS, plus the leases.
// excludedPaths: fields never queried (encrypted personal data, free-form
// attributes); everything else stays indexed under /*.
var cosmosContainers = [
  {
    name: 'ledger'
    partitionKeyPath: partitionKeyPath
    excludedPaths: [
      {
        path: '/attributes/*'
      }
    ]
  }
  {
    name: 'customers'
    partitionKeyPath: partitionKeyPath
    excludedPaths: [
      {
        path: '/personal/*'
      }
    ]
  }
  {
    name: 'balances'
    partitionKeyPath: partitionKeyPath
    excludedPaths: []
  }
  {
    name: 'orderstatus'
    partitionKeyPath: partitionKeyPath
    excludedPaths: []
  }
  {
    name: 'tenants'
    partitionKeyPath: partitionKeyPath
    excludedPaths: []
  }
  {
    name: 'apikeys'
    partitionKeyPath: partitionKeyPath
    excludedPaths: []
  }
  {
    name: 'poison'
    partitionKeyPath: partitionKeyPath
    excludedPaths: []
  }
  {
    name: 'system'
    partitionKeyPath: partitionKeyPath
    excludedPaths: []
  }
  {
    name: 'rulesets'
    partitionKeyPath: partitionKeyPath
    excludedPaths: [
      {
        path: '/draft/source/?'
      }
      {
        path: '/experiment/sealedSecret/?'
      }
    ]
  }
  {
    name: 'ruleversions'
    partitionKeyPath: partitionKeyPath
    excludedPaths: [
      {
        path: '/body/source/?'
      }
    ]
  }
  {
    name: 'piikeys'
    partitionKeyPath: partitionKeyPath
    excludedPaths: [
      {
        path: '/wrapped/?'
      }
    ]
  }
  {
    name: 'piiindex'
    partitionKeyPath: partitionKeyPath
    excludedPaths: []
  }
  {
    name: 'audit'
    partitionKeyPath: partitionKeyPath
    excludedPaths: [
      {
        path: '/before/*'
      }
      {
        path: '/after/*'
      }
    ]
  }
  {
    name: 'approvals'
    partitionKeyPath: partitionKeyPath
    excludedPaths: []
  }
  {
    name: 'webhookendpoints'
    partitionKeyPath: partitionKeyPath
    excludedPaths: [
      {
        path: '/secrets/*'
      }
    ]
  }
  {
    name: 'webhookmessages'
    partitionKeyPath: partitionKeyPath
    excludedPaths: [
      {
        path: '/body/?'
      }
    ]
  }
  {
    name: 'webhookdeliveries'
    partitionKeyPath: partitionKeyPath
    excludedPaths: []
  }
  {
    name: 'webhookattempts'
    partitionKeyPath: partitionKeyPath
    excludedPaths: []
  }
  {
    name: 'exports'
    partitionKeyPath: partitionKeyPath
    excludedPaths: []
  }
  {
    name: 'reviews'
    partitionKeyPath: partitionKeyPath
    excludedPaths: []
  }
  {
    name: 'expirycalendar'
    partitionKeyPath: partitionKeyPath
    excludedPaths: []
  }
  {
    name: leaseContainerName
    partitionKeyPath: '/id'
    excludedPaths: []
  }
]

var eventHubName = 'orders'
var consumerGroupName = 'accrue-ingest'
var exportsContainerName = 'exports'
var auditContainerName = 'audit'

// ---- resource names -----------------------------------------------------------

var compactPrefix = toLower(replace(namePrefix, '-', ''))
var names = {
  cosmos: 'cosmos-${namePrefix}-${nameSuffix}'
  eventHubs: 'evhns-${namePrefix}-${nameSuffix}'
  keyVault: 'kv-${namePrefix}-${nameSuffix}'
  dataStorage: take('st${compactPrefix}data${nameSuffix}', 24)
  hostStorage: take('st${compactPrefix}host${nameSuffix}', 24)
  workspace: 'log-${namePrefix}-${nameSuffix}'
  appInsights: 'appi-${namePrefix}-${nameSuffix}'
  plan: 'plan-${namePrefix}-${nameSuffix}'
  functionApp: 'func-${namePrefix}-${nameSuffix}'
  vnet: 'vnet-${namePrefix}-${nameSuffix}'
  webPubSub: 'wps-${namePrefix}-${nameSuffix}'
}
var deploymentContainerName = 'app-package'
var stackTags = union(tags, {
  app: 'accrue'
  region: region
})

// ---- modules ------------------------------------------------------------------

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    workspaceName: names.workspace
    appInsightsName: names.appInsights
    retentionInDays: logRetentionDays
    tags: stackTags
  }
}

module cosmos 'modules/cosmos.bicep' = {
  name: 'cosmos'
  params: {
    location: location
    replicaLocations: cosmosReplicaLocations
    accountName: names.cosmos
    databaseName: cosmosDatabaseName
    containers: cosmosContainers
    maxThroughput: cosmosMaxThroughput
    zoneRedundant: cosmosZoneRedundant
    privateNetworking: enablePrivateNetworking
    tags: stackTags
  }
}

module eventHubs 'modules/eventhubs.bicep' = {
  name: 'eventhubs'
  params: {
    location: location
    namespaceName: names.eventHubs
    hubName: eventHubName
    consumerGroupName: consumerGroupName
    partitionCount: eventHubPartitionCount
    capacity: eventHubCapacity
    maxCapacity: eventHubMaxCapacity
    retentionInDays: eventHubRetentionDays
    privateNetworking: enablePrivateNetworking
    tags: stackTags
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    location: location
    vaultName: names.keyVault
    skuName: keyVaultSku
    privateNetworking: enablePrivateNetworking
    tags: stackTags
  }
}

// Live updates (GraphQL subscriptions) on Azure: Web PubSub, fed by the change-feed function.
var webPubSubHubName = 'accrue'

module webPubSub 'modules/webpubsub.bicep' = {
  name: 'webpubsub'
  params: {
    location: location
    serviceName: names.webPubSub
    hubName: webPubSubHubName
    tags: stackTags
  }
}

module dataStorage 'modules/datastorage.bicep' = {
  name: 'datastorage'
  params: {
    location: location
    accountName: names.dataStorage
    skuName: storageSku
    exportsContainerName: exportsContainerName
    auditContainerName: auditContainerName
    exportsRetentionDays: exportsRetentionDays
    privateNetworking: enablePrivateNetworking
    tags: stackTags
  }
}

module hostStorage 'modules/hoststorage.bicep' = {
  name: 'hoststorage'
  params: {
    location: location
    accountName: names.hostStorage
    skuName: storageSku
    deploymentContainerName: deploymentContainerName
    privateNetworking: enablePrivateNetworking
    tags: stackTags
  }
}

// Private DNS zones of the public cloud, one per sub-resource reached privately.
var privateDnsZones = {
  cosmos: 'privatelink.documents.azure.com'
  eventHubs: 'privatelink.servicebus.windows.net'
  keyVault: 'privatelink.vaultcore.azure.net'
  blob: 'privatelink.blob.${environment().suffixes.storage}'
  queue: 'privatelink.queue.${environment().suffixes.storage}'
  table: 'privatelink.table.${environment().suffixes.storage}'
}

module network 'modules/network.bicep' = if (enablePrivateNetworking) {
  name: 'network'
  params: {
    location: location
    vnetName: names.vnet
    addressPrefix: vnetAddressPrefix
    privateDnsZoneNames: [
      privateDnsZones.cosmos
      privateDnsZones.eventHubs
      privateDnsZones.keyVault
      privateDnsZones.blob
      privateDnsZones.queue
      privateDnsZones.table
    ]
    tags: stackTags
  }
}

// Known at the start of the deployment (names, not outputs), as a module loop requires.
var privateEndpointTargets = [
  {
    name: 'cosmos'
    id: resourceId('Microsoft.DocumentDB/databaseAccounts', names.cosmos)
    groupId: 'Sql'
    zone: privateDnsZones.cosmos
  }
  {
    name: 'eventhubs'
    id: resourceId('Microsoft.EventHub/namespaces', names.eventHubs)
    groupId: 'namespace'
    zone: privateDnsZones.eventHubs
  }
  {
    name: 'keyvault'
    id: resourceId('Microsoft.KeyVault/vaults', names.keyVault)
    groupId: 'vault'
    zone: privateDnsZones.keyVault
  }
  {
    name: 'data-blob'
    id: resourceId('Microsoft.Storage/storageAccounts', names.dataStorage)
    groupId: 'blob'
    zone: privateDnsZones.blob
  }
  {
    name: 'host-blob'
    id: resourceId('Microsoft.Storage/storageAccounts', names.hostStorage)
    groupId: 'blob'
    zone: privateDnsZones.blob
  }
  {
    name: 'host-queue'
    id: resourceId('Microsoft.Storage/storageAccounts', names.hostStorage)
    groupId: 'queue'
    zone: privateDnsZones.queue
  }
  {
    name: 'host-table'
    id: resourceId('Microsoft.Storage/storageAccounts', names.hostStorage)
    groupId: 'table'
    zone: privateDnsZones.table
  }
]

module privateEndpoints 'modules/privateendpoint.bicep' = [for target in privateEndpointTargets: if (enablePrivateNetworking) {
  name: 'pe-${target.name}'
  params: {
    location: location
    name: 'pe-${namePrefix}-${target.name}'
    subnetId: network.outputs.privateEndpointSubnetId
    targetId: target.id
    groupId: target.groupId
    dnsZoneName: target.zone
    tags: stackTags
  }
  dependsOn: [
    cosmos
    eventHubs
    keyVault
    dataStorage
    hostStorage
  ]
}]

// Every setting shared/settings.py reads on Azure, set to the Azure adapters.
// Endpoints and names only: each service is reached with the app's managed
// identity, so no key or connection string appears here.
var appSettings = {
  ACCRUE_STORE: 'cosmos'
  ACCRUE_BUS: 'eventhubs'
  ACCRUE_KEYS: 'keyvault'
  ACCRUE_BLOBS: 'azure'
  ACCRUE_REGION: region
  COSMOS_ENDPOINT: cosmos.outputs.endpoint
  COSMOS_DATABASE: cosmosDatabaseName
  EVENTHUB_NAMESPACE: eventHubs.outputs.fullyQualifiedNamespace
  EVENTHUB_NAME: eventHubName
  EVENTHUB_CONSUMER_GROUP: consumerGroupName
  KEYVAULT_URI: keyVault.outputs.uri
  BLOB_ACCOUNT_URL: dataStorage.outputs.blobEndpoint
  WEBPUBSUB_ENDPOINT: webPubSub.outputs.endpoint
  WEBPUBSUB_HUB: webPubSubHubName
  // Identity-based connections of the triggers and the host (read by the host).
  EventHubConnection__fullyQualifiedNamespace: eventHubs.outputs.fullyQualifiedNamespace
  CosmosDbConnection__accountEndpoint: cosmos.outputs.endpoint
  AzureWebJobsStorage__accountName: hostStorage.outputs.accountName
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    location: location
    appName: names.functionApp
    planName: names.plan
    hostStorageName: hostStorage.outputs.accountName
    deploymentContainerName: hostStorage.outputs.deploymentContainerName
    appInsightsName: monitoring.outputs.appInsightsName
    appSettings: appSettings
    maximumInstanceCount: functionMaximumInstanceCount
    instanceMemoryMB: functionInstanceMemoryMB
    alwaysReadyHttp: functionAlwaysReadyHttp
    subnetId: enablePrivateNetworking ? network.outputs.functionsSubnetId : ''
    tags: stackTags
  }
}

module roles 'modules/roles.bicep' = {
  name: 'roles'
  params: {
    principalId: functionApp.outputs.principalId
    cosmosAccountName: cosmos.outputs.accountName
    cosmosDatabaseName: cosmos.outputs.databaseName
    eventHubNamespaceName: eventHubs.outputs.namespaceName
    eventHubName: eventHubs.outputs.hubName
    keyVaultName: keyVault.outputs.vaultName
    dataStorageName: dataStorage.outputs.accountName
    exportsContainerName: dataStorage.outputs.exportsContainerName
    auditContainerName: dataStorage.outputs.auditContainerName
    hostStorageName: hostStorage.outputs.accountName
    appInsightsName: monitoring.outputs.appInsightsName
    webPubSubName: webPubSub.outputs.serviceName
  }
}

// ---- what an operator needs (no keys, no connection strings) -------------------

output functionAppName string = functionApp.outputs.appName
output apiBaseUrl string = 'https://${functionApp.outputs.defaultHostName}'
output functionAppPrincipalId string = functionApp.outputs.principalId
output cosmosEndpoint string = cosmos.outputs.endpoint
output cosmosAccountName string = cosmos.outputs.accountName
output eventHubsNamespace string = eventHubs.outputs.fullyQualifiedNamespace
output keyVaultUri string = keyVault.outputs.uri
output keyVaultName string = keyVault.outputs.vaultName
output blobAccountUrl string = dataStorage.outputs.blobEndpoint
output dataStorageAccountName string = dataStorage.outputs.accountName
output auditContainerName string = dataStorage.outputs.auditContainerName
output appInsightsName string = monitoring.outputs.appInsightsName
output webPubSubEndpoint string = webPubSub.outputs.endpoint
