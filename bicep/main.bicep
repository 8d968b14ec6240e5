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

@description('Recreate the stack within the 90-day soft-delete retention of its deleted vault: true recovers that vault (and its keys) under the same name instead of failing on it. See docs/deploy.md.')
param keyVaultRecover bool = false

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

@description('Resource id of the action group the stack\'s alert rules notify (the operators\' own); empty: the rules fire without notifying anyone.')
param alertActionGroupId string = ''

param tags object = {}

@description('Warehouses that load exports: [{tenantId, principalId}]. Each identity may unwrap its tenant\'s export key only (modules/exportkeys.bicep).')
param warehouseAccess array = []

@description('Public IPv4 ranges (CIDR) of warehouses allowed to reach the export vault; empty: private endpoints only (docs/exports.md).')
param warehouseIpRules array = []

@description('Days operational documents are kept, overriding shared/store/layout.py TTL_RULES: "container=days,...". Empty: the rules\' own days.')
param ttlOverrides string = ''

@description('Host name operators open the operator page on (/operator): the WebAuthn relying-party id their security keys are bound to. Empty: the Function App\'s default host name. Set it to the custom domain before the first operator registers a key: keys do not move to another RP id.')
param operatorHostName string = ''

@description('Comma-separated AAGUIDs of the security-key models operators may register (attestation policy, docs/fido2.md). Empty: any FIDO2 key with user verification.')
param operatorAllowedAaguids string = ''

// ---- names the code depends on ------------------------------------------------

// shared/store/layout.py: every container is partitioned on /pk.
var partitionKeyPath = '/pk'
var cosmosDatabaseName = 'accrue'
// The change-feed trigger's lease container. Created here because a trigger that
// connects with a managed identity cannot create it (that needs control-plane rights).
var leaseContainerName = 'leases'

// One entry per container of shared/store/layout.py CONTAINERS, plus the leases.
// excludedPaths: fields never queried (encrypted personal data, free-form
// attributes); everything else stays indexed under /*. (layout.UNINDEXED_PATHS)
// includedPaths: fields indexed again under an excluded path (layout.REINDEXED_PATHS).
// defaultTtl: null = TTL off (the ledger, the audit log: nothing ever expires);
// -1 = on, only items carrying a ttl expire; N = seconds after the last write.
// The app stamps each item's ttl from layout.TTL_RULES (ACCRUE_TTL_DAYS overrides).
var cosmosContainers = [
  {
    name: 'ledger'
    partitionKeyPath: partitionKeyPath
    defaultTtl: null
    includedPaths: [
      {
        path: '/attributes/rewardId/?'
      }
    ]
    excludedPaths: [
      {
        path: '/attributes/*'
      }
    ]
  }
  {
    name: 'customers'
    partitionKeyPath: partitionKeyPath
    defaultTtl: null
    includedPaths: []
    excludedPaths: [
      {
        path: '/personal/*'
      }
    ]
  }
  {
    name: 'balances'
    partitionKeyPath: partitionKeyPath
    defaultTtl: null
    includedPaths: []
    excludedPaths: []
  }
  {
    name: 'orderstatus'
    partitionKeyPath: partitionKeyPath
    defaultTtl: 7776000 // 90 days
    includedPaths: []
    excludedPaths: []
  }
  {
    name: 'tenants'
    partitionKeyPath: partitionKeyPath
    defaultTtl: null
    includedPaths: []
    excludedPaths: []
  }
  {
    name: 'apikeys'
    partitionKeyPath: partitionKeyPath
    defaultTtl: null
    includedPaths: []
    excludedPaths: []
  }
  {
    name: 'poison'
    partitionKeyPath: partitionKeyPath
    defaultTtl: 7776000 // 90 days
    includedPaths: []
    excludedPaths: []
  }
  {
    name: 'system'
    partitionKeyPath: partitionKeyPath
    defaultTtl: -1
    includedPaths: []
    excludedPaths: []
  }
  {
    name: 'rulesets'
    partitionKeyPath: partitionKeyPath
    defaultTtl: null
    includedPaths: []
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
    defaultTtl: null
    includedPaths: []
    excludedPaths: [
      {
        path: '/body/source/?'
      }
    ]
  }
  {
    name: 'piikeys'
    partitionKeyPath: partitionKeyPath
    defaultTtl: null
    includedPaths: []
    excludedPaths: [
      {
        path: '/wrapped/?'
      }
    ]
  }
  {
    name: 'piiindex'
    partitionKeyPath: partitionKeyPath
    defaultTtl: null
    includedPaths: []
    excludedPaths: []
  }
  {
    name: 'audit'
    partitionKeyPath: partitionKeyPath
    defaultTtl: null
    includedPaths: []
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
    defaultTtl: 7776000 // 90 days
    includedPaths: []
    excludedPaths: []
  }
  {
    name: 'webhookendpoints'
    partitionKeyPath: partitionKeyPath
    defaultTtl: null
    includedPaths: []
    excludedPaths: [
      {
        path: '/secrets/*'
      }
    ]
  }
  {
    name: 'webhookmessages'
    partitionKeyPath: partitionKeyPath
    defaultTtl: 2592000 // 30 days
    includedPaths: []
    excludedPaths: [
      {
        path: '/body/?'
      }
    ]
  }
  {
    name: 'webhookdeliveries'
    partitionKeyPath: partitionKeyPath
    defaultTtl: 604800 // 7 days
    includedPaths: []
    excludedPaths: []
  }
  {
    name: 'webhookattempts'
    partitionKeyPath: partitionKeyPath
    defaultTtl: 2592000 // 30 days
    includedPaths: []
    excludedPaths: [
      {
        path: '/url/?'
      }
      {
        path: '/error/?'
      }
      {
        path: '/responseExcerpt/?'
      }
    ]
  }
  {
    name: 'exports'
    partitionKeyPath: partitionKeyPath
    defaultTtl: null
    includedPaths: []
    excludedPaths: []
  }
  {
    name: 'reviews'
    partitionKeyPath: partitionKeyPath
    defaultTtl: -1
    includedPaths: []
    excludedPaths: []
  }
  {
    name: 'expirycalendar'
    partitionKeyPath: partitionKeyPath
    defaultTtl: null
    includedPaths: []
    excludedPaths: []
  }
  {
    name: 'codes'
    partitionKeyPath: partitionKeyPath
    defaultTtl: null
    includedPaths: []
    excludedPaths: [
      {
        path: '/sealed/?'
      }
    ]
  }
  {
    name: leaseContainerName
    partitionKeyPath: '/id'
    defaultTtl: null
    includedPaths: []
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
  exportVault: 'kvx-${namePrefix}-${nameSuffix}'
  keyManager: 'id-${namePrefix}-keys-${nameSuffix}'
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
    recover: keyVaultRecover
    privateNetworking: enablePrivateNetworking
    tags: stackTags
  }
}

// The identity that creates and rotates tenant keys (Crypto Officer on the vault only).
module keyManager 'modules/keymanager.bicep' = {
  name: 'keymanager'
  params: {
    location: location
    identityName: names.keyManager
    keyVaultName: keyVault.outputs.vaultName
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
    name: 'exportkeys'
    id: resourceId('Microsoft.KeyVault/vaults', names.exportVault)
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
    exportKeys
    dataStorage
    hostStorage
  ]
}]

// Every setting shared/settings.py reads on Azure, set to the Azure adapters.
// Endpoints and names only: each service is reached with the app's managed
// identity, so no key or connection string appears here.
var operatorRpId = empty(operatorHostName) ? '${names.functionApp}.azurewebsites.net' : operatorHostName

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
  // Key management (create, rotate) as the key-manager identity; the key type follows the tier.
  KEYVAULT_MANAGEMENT_CLIENT_ID: keyManager.outputs.clientId
  KEYVAULT_SKU: keyVaultSku
  // The tenants' export keys, in a vault of their own (modules/exportkeys.bicep).
  EXPORT_KEYVAULT_URI: 'https://${names.exportVault}${environment().suffixes.keyvaultDns}/'
  BLOB_ACCOUNT_URL: dataStorage.outputs.blobEndpoint
  // Overrides of the TTL rules of shared/store/layout.py (empty: the rules' own days).
  ACCRUE_TTL_DAYS: ttlOverrides
  // Platform operators' security keys (docs/fido2.md): relying-party id and origin of the operator page.
  ACCRUE_WEBAUTHN_RP_ID: operatorRpId
  ACCRUE_WEBAUTHN_ORIGIN: 'https://${operatorRpId}'
  ACCRUE_WEBAUTHN_AAGUIDS: operatorAllowedAaguids
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
    keyManagerIdentityId: keyManager.outputs.id
    maximumInstanceCount: functionMaximumInstanceCount
    instanceMemoryMB: functionInstanceMemoryMB
    alwaysReadyHttp: functionAlwaysReadyHttp
    subnetId: enablePrivateNetworking ? network.outputs.functionsSubnetId : ''
    tags: stackTags
  }
}

// The export keys: their own vault, the app and key manager on it, each warehouse on its tenant's key only.
module exportKeys 'modules/exportkeys.bicep' = {
  name: 'exportkeys'
  params: {
    location: location
    vaultName: names.exportVault
    skuName: keyVaultSku
    recover: keyVaultRecover
    privateNetworking: enablePrivateNetworking
    appPrincipalId: functionApp.outputs.principalId
    keyManagerPrincipalId: keyManager.outputs.principalId
    warehouseAccess: warehouseAccess
    warehouseIpRules: warehouseIpRules
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

// Every service's resource logs and metrics to the stack's workspace.
module diagnostics 'modules/diagnostics.bicep' = {
  name: 'diagnostics'
  params: {
    workspaceId: monitoring.outputs.workspaceId
    cosmosAccountName: cosmos.outputs.accountName
    eventHubNamespaceName: eventHubs.outputs.namespaceName
    keyVaultName: keyVault.outputs.vaultName
    exportVaultName: exportKeys.outputs.vaultName
    dataStorageName: dataStorage.outputs.accountName
    hostStorageName: hostStorage.outputs.accountName
    functionAppName: functionApp.outputs.appName
    webPubSubName: webPubSub.outputs.serviceName
  }
}

// The SLO and throttling alerts (docs/telemetry.md), in every region.
module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  params: {
    location: location
    namePrefix: namePrefix
    workspaceId: monitoring.outputs.workspaceId
    actionGroupId: alertActionGroupId
    cosmosAccountName: cosmos.outputs.accountName
    keyVaultName: keyVault.outputs.vaultName
    eventHubNamespaceName: eventHubs.outputs.namespaceName
    tags: stackTags
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
output keyManagerClientId string = keyManager.outputs.clientId
output keyManagerPrincipalId string = keyManager.outputs.principalId
output blobAccountUrl string = dataStorage.outputs.blobEndpoint
output dataStorageAccountName string = dataStorage.outputs.accountName
output auditContainerName string = dataStorage.outputs.auditContainerName
output appInsightsName string = monitoring.outputs.appInsightsName
output webPubSubEndpoint string = webPubSub.outputs.endpoint
