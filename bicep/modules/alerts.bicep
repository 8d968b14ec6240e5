// Alert rules of one stack: the SLOs of docs/telemetry.md and the services' throttling.
//
// Two kinds:
// - log alerts (scheduledQueryRules) on the workspace's AppMetrics table, over the
//   platform's own metrics (names from shared/telemetry/names.py, checked by
//   tests/unit/bicep/test_bicep_monitoring.py), and on AppRequests for the 5xx rate;
//   the Azure Monitor exporter sends each histogram as count, sum, min and max per
//   interval, so a lag alert watches the max (it fires no later than the p99 would);
// - metric alerts on the services' platform metrics (Cosmos DB and Key Vault 429s, an
//   Event Hub receiving orders while nothing reads it).
// Event Hubs has no consumer-lag metric of its own, and accrue.bus.backlog is the local
// queue's only (on Azure the consumer cannot see the hub's end): a consumer that has
// stopped shows as batches given back for the host's retry (accrue.ingest.deferred_batches,
// a partition paused on one batch) or as a hub whose incoming messages nobody reads.
// Every rule notifies `actionGroupId` (empty: the rules fire in the portal only).

param location string

@description('Prefix of the rule names, e.g. accrue-eu.')
param namePrefix string

@description('Resource id of the Log Analytics workspace behind Application Insights.')
param workspaceId string

@description('Resource id of the action group every rule notifies; empty for none.')
param actionGroupId string = ''

param cosmosAccountName string

param keyVaultName string

@description('Projection lag (committed -> read model) that is never acceptable, seconds.')
param projectionLagSeconds int = 30

@description('Ingest lag SLO (accepted -> committed, p99), seconds.')
param ingestLagSloSeconds int = 10

@description('Ingest batches given back for the host\'s retry within 30 minutes above which a partition is stuck.')
param deferredBatchesThreshold int = 2

@description('Name of the Event Hubs namespace the orders arrive on.')
param eventHubNamespaceName string

@description('Share of API requests answered 5xx, percent, above which the availability SLO burns.')
param api5xxPercent int = 1

@description('Cosmos DB requests answered 429 per five minutes.')
param cosmosThrottledRequests int = 100

param tags object

var metricActions = empty(actionGroupId) ? [] : [
  {
    actionGroupId: actionGroupId
  }
]
var logActionGroups = empty(actionGroupId) ? [] : [
  actionGroupId
]

// One entry per alert on a platform metric of shared/telemetry/names.py. `aggregation`
// summarises the AppMetrics rows of the window: Max for histograms (lags), Sum for
// gauges and counters (the exporter sends counters as deltas).
var customMetricAlerts = [
  {
    name: 'projection-lag'
    metric: 'accrue.projection.lag'
    column: 'Max'
    threshold: projectionLagSeconds
    severity: 1
    description: 'Projection lag (committed to read model) above 30 s: balances and webhooks are stale.'
  }
  {
    name: 'ingest-lag'
    metric: 'accrue.ingest.lag'
    column: 'Max'
    threshold: ingestLagSloSeconds
    severity: 2
    description: 'Ingest lag (accepted to committed) above its SLO: orders wait to be credited.'
  }
  {
    name: 'poison-items'
    metric: 'accrue.poison.items'
    column: 'Sum'
    threshold: 0
    severity: 2
    description: 'Items in the poison store: an order or a change could not be handled and waits for replay.'
  }
  {
    name: 'poison-pending'
    metric: 'accrue.poison.pending'
    column: 'Max'
    threshold: 0
    severity: 3
    description: 'Items rest in the poison store unreplayed: they are deleted 90 days after they were put (the container TTL), and an order\'s claim 90 days after its intake.'
  }
  {
    name: 'ingest-deferred-batches'
    metric: 'accrue.ingest.deferred_batches'
    column: 'Sum'
    // Counted over half an hour: the host retries a batch with a backoff of up to 15 minutes,
    // and a lone deferral under throttling is no incident; repeated ones are a paused partition.
    window: 'PT30M'
    aggregation: 'Total'
    threshold: deferredBatchesThreshold
    severity: 1
    description: 'Ingest batches failing and retried again and again: a partition of the orders hub is paused on one batch, its orders wait.'
  }
  {
    name: 'failing-webhook-endpoints'
    metric: 'accrue.webhook.endpoints.failing'
    column: 'Sum'
    threshold: 0
    severity: 3
    description: 'Webhook endpoints failing deliveries (disabled after 5 days of failures).'
  }
]

// One entry per alert on a service's platform metric.
var platformMetricAlerts = [
  {
    name: 'cosmos-throttling'
    target: 'cosmos'
    namespace: 'Microsoft.DocumentDB/databaseAccounts'
    metric: 'TotalRequests'
    aggregation: 'Count'
    dimension: 'StatusCode'
    values: [
      '429'
    ]
    threshold: cosmosThrottledRequests
    severity: 2
    description: 'Cosmos DB answers 429: the autoscale ceiling is too low for the load.'
  }
  {
    name: 'keyvault-throttling'
    target: 'keyVault'
    namespace: 'Microsoft.KeyVault/vaults'
    metric: 'ServiceApiResult'
    aggregation: 'Count'
    dimension: 'StatusCode'
    values: [
      '429'
    ]
    threshold: 0
    severity: 2
    description: 'Key Vault throttles wrap/unwrap calls: data-key caching is not absorbing the load.'
  }
]

resource cosmos 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' existing = {
  name: cosmosAccountName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource eventHubNamespace 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: eventHubNamespaceName
}

// Orders arrive and nothing reads them for 15 minutes: the ingest function is down, or every
// partition is paused. Both criteria must hold (a quiet hub is no incident).
resource eventHubUnread 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: '${namePrefix}-eventhubs-unread'
  location: 'global'
  tags: tags
  properties: {
    description: 'Orders arrive on Event Hubs and none is read: the ingest consumer has stopped.'
    severity: 1
    enabled: true
    scopes: [
      eventHubNamespace.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'incoming'
          metricNamespace: 'Microsoft.EventHub/namespaces'
          metricName: 'IncomingMessages'
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Total'
        }
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'outgoing'
          metricNamespace: 'Microsoft.EventHub/namespaces'
          metricName: 'OutgoingMessages'
          operator: 'LessThan'
          threshold: 1
          timeAggregation: 'Total'
        }
      ]
    }
    autoMitigate: true
    actions: metricActions
  }
}

var targets = {
  cosmos: cosmos.id
  keyVault: vault.id
}

resource customAlerts 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = [for alert in customMetricAlerts: {
  name: '${namePrefix}-${alert.name}'
  location: location
  tags: tags
  properties: {
    displayName: '${namePrefix} ${alert.name}'
    description: alert.description
    severity: alert.severity
    enabled: true
    scopes: [
      workspaceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: alert.?window ?? 'PT5M'
    criteria: {
      allOf: [
        {
          query: 'AppMetrics | where Name == \'${alert.metric}\' | project TimeGenerated, value = todouble(${alert.column})'
          timeAggregation: alert.?aggregation ?? 'Maximum'
          metricMeasureColumn: 'value'
          operator: 'GreaterThan'
          threshold: alert.threshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: logActionGroups
    }
  }
}]

// The API's availability SLO (99.9 %): the share of requests answered 5xx over five
// minutes, once there are enough requests for a share to mean something.
resource api5xxRate 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: '${namePrefix}-api-5xx-rate'
  location: location
  tags: tags
  properties: {
    displayName: '${namePrefix} api-5xx-rate'
    description: 'API requests answered 5xx above ${api5xxPercent} % over five minutes.'
    severity: 1
    enabled: true
    scopes: [
      workspaceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: 'AppRequests | summarize total = count(), failed = countif(toint(ResultCode) >= 500) | where total >= 20 | project rate = 100.0 * failed / total'
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'rate'
          operator: 'GreaterThan'
          threshold: api5xxPercent
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: logActionGroups
    }
  }
}

resource platformAlerts 'Microsoft.Insights/metricAlerts@2018-03-01' = [for alert in platformMetricAlerts: {
  name: '${namePrefix}-${alert.name}'
  location: 'global'
  tags: tags
  properties: {
    description: alert.description
    severity: alert.severity
    enabled: true
    scopes: [
      targets[alert.target]
    ]
    evaluationFrequency: 'PT1M'
    windowSize: 'PT5M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: alert.name
          metricNamespace: alert.namespace
          metricName: alert.metric
          dimensions: [
            {
              name: alert.dimension
              operator: 'Include'
              values: alert.values
            }
          ]
          operator: 'GreaterThan'
          threshold: alert.threshold
          timeAggregation: alert.aggregation
        }
      ]
    }
    autoMitigate: true
    actions: metricActions
  }
}]
