// Cosmos DB for NoSQL: the account, the database and every container.
//
// The container list is not written here: main.bicep passes it in (one place,
// checked against shared/store/layout.py by tests/unit/bicep). Local (key) auth
// is off, so the only way in is Entra ID with a data-plane role assignment.

@description('Azure region of the stack: the account\'s write region.')
param location string

@description('Read replicas, in failover order. Must stay inside the stack\'s geography (data residency).')
param replicaLocations array

@description('Cosmos DB account name (globally unique).')
param accountName string

param databaseName string

@description('Containers: { name, partitionKeyPath, defaultTtl (null: off, -1: per item, N seconds), includedPaths and excludedPaths: [ { path } ] }.')
param containers array

@description('Autoscale ceiling in RU/s, shared by the database\'s containers.')
@minValue(1000)
param maxThroughput int

@description('Zone redundancy for every region of the account (not offered in every region).')
param zoneRedundant bool

@description('Disable public network access; reach the account through its private endpoint.')
param privateNetworking bool

param tags object

var regions = concat([location], replicaLocations)

resource account 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' = {
  name: accountName
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    // Every region listed here holds a full copy of the data: only the
    // stack's own geography may appear (see params/*.parameters.json).
    locations: [for (region, i) in regions: {
      locationName: region
      failoverPriority: i
      isZoneRedundant: zoneRedundant
    }]
    enableAutomaticFailover: !empty(replicaLocations)
    // Single write region: continuous backup does not support multi-region writes.
    enableMultipleWriteLocations: false
    consistencyPolicy: {
      defaultConsistencyLevel: 'Session'
    }
    backupPolicy: {
      type: 'Continuous'
      continuousModeProperties: {
        tier: 'Continuous30Days'
      }
    }
    disableLocalAuth: true
    disableKeyBasedMetadataWriteAccess: true
    minimalTlsVersion: 'Tls12'
    publicNetworkAccess: privateNetworking ? 'Disabled' : 'Enabled'
    networkAclBypass: 'None'
  }
}

resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-11-15' = {
  parent: account
  name: databaseName
  properties: {
    resource: {
      id: databaseName
    }
    options: {
      autoscaleSettings: {
        maxThroughput: maxThroughput
      }
    }
  }
}

resource sqlContainers 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = [for container in containers: {
  parent: database
  name: container.name
  properties: {
    resource: {
      id: container.name
      partitionKey: {
        paths: [
          container.partitionKeyPath
        ]
        kind: 'Hash'
        version: 2
      }
      // Operational containers expire documents (shared/store/layout.py TTL_RULES);
      // null leaves TTL off, so the ledger and the audit log never lose an item.
      defaultTtl: container.defaultTtl
      indexingPolicy: {
        indexingMode: 'consistent'
        automatic: true
        // A field a query needs under an excluded path is included again (the precise path wins).
        includedPaths: concat([
          {
            path: '/*'
          }
        ], container.includedPaths)
        // Encrypted and free-form fields are never queried: indexing them costs
        // RU on every write and would index ciphertext.
        excludedPaths: concat([
          {
            path: '/"_etag"/?'
          }
        ], container.excludedPaths)
      }
    }
  }
}]

output accountName string = account.name
output endpoint string = account.properties.documentEndpoint
output databaseName string = database.name
